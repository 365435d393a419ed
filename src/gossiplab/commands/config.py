"""`gossiplab config`: show the resolved config or the reference of every key."""

from __future__ import annotations

from gossiplab.commands.common import add_config_options, config_from_args
from gossiplab.config import reference_markdown, to_toml


def register(sub) -> None:
    p = sub.add_parser("config", help="show the resolved config (TOML) or the key reference")
    p.add_argument("what", choices=["show", "reference"], nargs="?", default="show")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.what == "reference":
        print(reference_markdown())
    else:
        print(to_toml(config_from_args(args)), end="")
    return 0
