"""The README stays true: its config reference covers every key and its commands exist."""

from pathlib import Path

from gossiplab.cli import build_parser
from gossiplab.config import Config

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_documents_every_config_key():
    for sec, f in Config.model_fields.items():
        for key in f.annotation.model_fields:
            assert f"`{sec}.{key}`" in README, f"README lacks config key {sec}.{key}"


def test_readme_starts_with_the_two_commands():
    blocks = README.split("```bash")
    assert "gossiplab run" in blocks[1].split("```")[0]
    assert "pytest" in blocks[2].split("```")[0]


def test_every_cli_command_is_in_the_readme():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        assert f"gossiplab {name}" in README, f"README lacks `gossiplab {name}`"


def test_readme_tables_have_one_cell_per_column():
    """A bare | inside a cell (choices such as `a | b`) splits it on GitHub and the meaning
    column is lost: every row has as many cells as its table's header."""
    import re

    from gossiplab.config import reference_markdown

    for text in (README, reference_markdown()):
        header = None
        for line in text.splitlines():
            if not line.startswith("|"):
                header = None
                continue
            cells = len(re.split(r"(?<!\\)\|", line.strip())) - 2
            if header is None:
                header = cells
            assert cells == header, f"table row with {cells} cells, header has {header}: {line[:80]}"
