"""Open a report page in headless Chromium: do its figures load, does anything overflow the page?

Also a script: ``python tests/report/browser.py REPORT/index.html SHOT.png`` checks a report and
saves a screenshot (how docs/report-screenshot.png was made).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Chromium as root in a container: no sandbox, no GPU, nothing phoning home, a fresh profile.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--hide-scrollbars", "--virtual-time-budget=15000"]

CHECK = """
<script>
window.addEventListener('load', () => {
  const W = document.documentElement.clientWidth;
  const clips = a => ['auto', 'scroll', 'hidden'].includes(getComputedStyle(a).overflowX);
  const scrolls = e => { for (let a = e.parentElement; a; a = a.parentElement) if (clips(a)) return true;
    return false; };
  const imgs = [...document.images];
  const out = {
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    scaled: imgs.filter(i => i.getBoundingClientRect().width
                             > i.parentElement.getBoundingClientRect().width + 1).map(i => i.alt),
    pageWidth: document.documentElement.scrollWidth, viewport: W,
    overflowing: [...document.querySelectorAll('body *')].filter(e => {
      const r = e.getBoundingClientRect(); return r.width > 0 && r.right > W + 1 && !scrolls(e);
    }).map(e => e.tagName + (e.id ? '#' + e.id : '')).slice(0, 20),
  };
  document.body.setAttribute('data-check', JSON.stringify(out));
});
</script>
"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="gl-chromium-") as profile:
        return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def check_page(page: Path, width: int = 1280, height: int = 900, timeout: float = 120) -> dict:
    """Load ``page`` (with a checking script appended to a copy beside it) and return what the
    script found: image count, broken/scaled images, page and viewport width, overflowing
    elements (outside any scrolling container)."""
    browser = chromium()
    if browser is None:
        raise FileNotFoundError("no chromium")
    probe = page.with_name(f".check-{page.name}")
    probe.write_text(page.read_text() + CHECK)
    try:
        r = _run(browser, [f"--window-size={width},{height}", "--dump-dom", probe.resolve().as_uri()],
                 timeout)
    finally:
        probe.unlink()
    m = re.search(r'data-check="([^"]*)"', r.stdout)
    if m is None:
        raise RuntimeError(f"chromium returned no check result (exit {r.returncode}): {r.stderr[-500:]}")
    return json.loads(html.unescape(m.group(1)))


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 2400, timeout: float = 120) -> None:
    browser = chromium()
    if browser is None:
        raise FileNotFoundError("no chromium")
    r = _run(browser, [f"--window-size={width},{height}", f"--screenshot={out.resolve()}",
                       page.resolve().as_uri()], timeout)
    if not out.exists():
        raise RuntimeError(f"chromium wrote no screenshot (exit {r.returncode}): {r.stderr[-500:]}")


if __name__ == "__main__":
    page, shot = Path(sys.argv[1]), Path(sys.argv[2])
    print(json.dumps(check_page(page), indent=1))
    screenshot(page, shot)
    print(f"screenshot: {shot}")
