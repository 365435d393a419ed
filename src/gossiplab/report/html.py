"""One self-contained HTML page: figures embedded (PNG as data URIs, with links to the PNG/SVG
files beside it), tables, skipped figures with reasons, and the sweep files."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto; max-width: 1280px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; box-sizing: border-box; border: 1px solid #eee; }
.scroll { overflow-x: auto; max-width: 100%; }
figcaption { font-size: .9em; color: #444; } .files { font-size: .8em; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
.skip { color: #555; } .bad { color: #b00; } .warn { color: #a60; }
"""


def esc(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def table(header: list[str] | None, rows: list[list[Any]], left: int = 1) -> str:
    out = ['<div class="scroll"><table>']  # a wide table scrolls in its box, not the page
    if header:
        out += ["<tr>", *[f'<th class="{"l" if i < left else ""}">{esc(h)}</th>'
                          for i, h in enumerate(header)], "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{esc(c)}</td>'
                                    for i, c in enumerate(row)) + "</tr>")
    out.append("</table></div>")
    return "".join(out)


def figure_block(out: Path, fig: dict[str, Any]) -> str:
    png = out / fig["png"]
    data = base64.b64encode(png.read_bytes()).decode()
    return (f'<figure id="{esc(fig["name"])}"><h3>{esc(fig["title"])}</h3>'
            f'<img alt="{esc(fig["title"])}" src="data:image/png;base64,{data}">'
            f'<figcaption>{esc(fig["caption"])} <span class="files">'
            f'[<a href="{esc(fig["png"])}">PNG</a> · <a href="{esc(fig["svg"])}">SVG</a>]</span>'
            "</figcaption></figure>")


def page(out: Path, ctx: dict[str, Any]) -> str:
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{esc(ctx['title'])}</title><style>{CSS}</style></head><body>",
             f"<h1>{esc(ctx['title'])}</h1>",
             f"<p>{esc(ctx['subtitle'])}</p>"]
    parts.append("<h2>Overview</h2>" + table(None, ctx["overview"]))
    if ctx["varied"]:
        parts.append("<p>Axes varied: " + ", ".join(f"<code>{esc(k)}</code>" for k in ctx["varied"])
                     + f". Aggregation over seeds: mean, {esc(ctx['interval'])}.</p>")
    parts.append("<h2>Figures</h2>")
    if ctx["figures"]:
        parts.append("<ul>" + "".join(f'<li><a href="#{esc(f["name"])}">{esc(f["title"])}</a></li>'
                                      for f in ctx["figures"]) + "</ul>")
    else:
        parts.append("<p>No figure could be drawn from these results.</p>")
    parts += [figure_block(out, f) for f in ctx["figures"]]
    if ctx["skipped"]:
        parts.append("<h3>Figures skipped</h3><ul class='skip'>" + "".join(
            f"<li><b>{esc(s['title'])}</b> ({esc(s['name'])}): {esc(s['reason'])}</li>"
            for s in ctx["skipped"]) + "</ul>")
    parts.append("<h2>Results by configuration</h2>")
    parts.append(f"<p>Final metrics of the averaged model; mean over seeds with {esc(ctx['interval'])}."
                 " Only runs with status ok.</p>")
    parts.append(table(ctx["summary_header"], ctx["summary_rows"], left=ctx["summary_left"]))
    if ctx["problems"]:
        parts.append("<h2>Diverged and failed runs</h2>")
        parts.append(table(["run", "status", "config", "detail"], ctx["problems"], left=4))
    parts.append("<h2>Sweep files</h2>")
    for s in ctx["sweeps"]:
        parts.append(f"<h3>{esc(s['name'])}</h3><p>file: <code>{esc(s['file'])}</code>, "
                     f"recorded {esc(s['created'])}</p><pre>{esc(s['source'])}</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
