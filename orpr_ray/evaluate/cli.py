"""``orpr backtest --run RUN_DIR`` and ``orpr report RUN_DIR``: compare every policy, then write the report.

The run folder holds the stages' outputs in fixed subfolders (``data/``, ``labels/``, ``pretrain/``,
``finetune/``, ``rl/``, ``sweep/``; docs/EVALUATION.md); the backtest writes ``backtest/`` and the
report ``report/``. Without ``--config`` the run's own config is used (see ``run_config``).
"""
from __future__ import annotations

import argparse

from orpr_ray.cli import add_config_arguments


def register(subparsers) -> None:
    backtest = subparsers.add_parser("backtest", help="roll every policy through the test window and compare",
                                     description=__doc__.splitlines()[0])
    backtest.add_argument("--run", required=True, dest="run_dir", help="run folder (data/, labels/, ...)")
    backtest.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(backtest)
    backtest.set_defaults(func=run_backtest_command)

    report = subparsers.add_parser("report", help="write the self-contained HTML report of a run",
                                   description=__doc__.splitlines()[0])
    report.add_argument("run_dir", help="run folder with a finished backtest/")
    report.set_defaults(func=run_report_command)


def run_backtest_command(args: argparse.Namespace) -> int:
    from orpr_ray.evaluate.backtest import format_headline, run_backtest, run_config

    cfg = run_config(args.run_dir, args.config, args.overrides)
    manifest = run_backtest(args.run_dir, cfg, progress=not args.no_progress)
    print(format_headline(manifest))
    print(f"written to {args.run_dir}/backtest")
    return 0


def run_report_command(args: argparse.Namespace) -> int:
    from orpr_ray.evaluate.report import write_report

    path = write_report(args.run_dir)
    print(f"report written to {path}")
    return 0
