"""What every ``unetseg`` sub-command's parser shares: the names its options go by in messages."""

from __future__ import annotations

import argparse


def flag_names(parser: argparse.ArgumentParser, positional: dict[str, str] | None = None) -> dict[str, str]:
    """Option key (the argument's ``dest``) -> its flag(s), for error messages; ``positional``
    names the positional arguments (e.g. ``{"out": "OUT.zip"}``)."""
    names: dict[str, str] = dict(positional or {})
    for action in parser._actions:  # argparse keeps no public list of a parser's arguments
        if action.option_strings and action.dest != "help":
            flag = max(action.option_strings, key=len)
            names[action.dest] = f"{names[action.dest]}/{flag}" if action.dest in names else flag
    return names


def finish(parser: argparse.ArgumentParser, func, positional: dict[str, str] | None = None) -> None:
    """Attach the sub-command's function and its option names to the parser."""
    parser.set_defaults(func=func, flag_names=flag_names(parser, positional))
