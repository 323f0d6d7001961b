"""``orpr <stage>``: one command line for every stage.

Each stage module that has a command exposes ``register(subparsers)``, which adds its subparser
and sets ``func`` to a callable taking the parsed arguments and returning an exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from orpr_ray.core.errors import InputError

STAGE_COMMANDS = (
    "orpr_ray.data.cli",
    "orpr_ray.pipeline",
    "orpr_ray.sim.cli",
    "orpr_ray.train.cli",
    "orpr_ray.label.cli",
    "orpr_ray.rl.cli",
    "orpr_ray.evaluate.cli",
    "orpr_ray.serve.cli",
    "orpr_ray.classic.cli",
)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--config FILE`` and repeatable ``--set a.b=value`` every stage takes."""
    parser.add_argument("--config", help="YAML config file (defaults apply to what it leaves out)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set label.shard_size=500 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orpr", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    for name in STAGE_COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"orpr {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
