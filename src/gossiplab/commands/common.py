"""Options shared by subcommands."""

from __future__ import annotations

import argparse

from gossiplab.config import Config, load_config


def add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE.toml", help="experiment config (TOML)")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a config key, e.g. --set optim.lr=0.05 "
                   "(repeatable; values in TOML syntax)")


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)
