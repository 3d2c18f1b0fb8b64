"""``pypull config``: the configuration pypull would use, and where each value comes from."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..text import shown
from .common import load_config
from .options import add_command, add_common, add_settings

if TYPE_CHECKING:
    import argparse

    from .options import Subparsers


def add_config(sub: Subparsers) -> None:
    config = add_command(
        sub,
        "config",
        help="show the effective configuration and where each value comes from",
        description="Print the configuration pypull would use: defaults, overridden by the file "
        "($PYPULL_CONFIG, else $XDG_CONFIG_HOME/pypull/config.toml), by PYPULL_* environment "
        "variables, and by the options given here.",
    )
    add_common(config)
    add_settings(config)
    config.set_defaults(handler=_cmd_config)


def _cmd_config(args: argparse.Namespace) -> int:
    from ..config import render

    # Values from the file and the environment, escaped but whole: this is where to read them.
    for line in render(load_config(args)).splitlines():
        print(shown(line, None))
    return 0
