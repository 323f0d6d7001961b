"""``orpr data synth | validate | import-m5``: make, check and import datasets.

Command-line flags are turned into config overrides (``data.synth.units=...``), so they are
validated by the same typed config as a YAML file, and the manifest records the resolved values.
"""
from __future__ import annotations

import argparse
import json

from orpr_ray.cli import add_config_arguments
from orpr_ray.config import load_config
from orpr_ray.data.dataset import Dataset
from orpr_ray.data.io import load_dataset, write_dataset
from orpr_ray.data.m5 import import_m5
from orpr_ray.data.stats import summarize
from orpr_ray.data.synth import synthesize
from orpr_ray.data.tables import FORMATS


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="make, check and import datasets",
                                   description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="<command>")

    synth = commands.add_parser("synth", help="write a synthetic e-commerce catalogue")
    synth.add_argument("--units", type=int, help="units (SKU x DC); default data.synth.units")
    synth.add_argument("--days", type=int, help="days of history; default data.synth.days")
    synth.add_argument("--seed", type=int, help="random seed; default the config's root seed")
    _add_output_arguments(synth, required=True)
    add_config_arguments(synth)
    synth.set_defaults(func=run_synth)

    validate = commands.add_parser("validate", help="load a dataset folder, check it, print a summary")
    validate.add_argument("dir", help="folder with demand.{parquet,csv} and units.{parquet,csv}")
    validate.add_argument("--fill-missing-days", action="store_true", default=None,
                          help="count a missing day inside a unit's range as 0 sales instead of an error")
    _add_output_arguments(validate, required=False)
    add_config_arguments(validate)
    validate.set_defaults(func=run_validate)

    m5 = commands.add_parser("import-m5", help="convert the M5 competition files into a dataset folder")
    m5.add_argument("dir", help="folder with sales_train_*.csv, calendar.csv and sell_prices.csv")
    m5.add_argument("--lead-time-days", type=int, help="lead time of every unit; default data.m5.lead_time_days")
    m5.add_argument("--review-period-days", type=int,
                    help="review period of every unit; default data.m5.review_period_days")
    m5.add_argument("--margin", type=float, help="gross margin: unit_cost = unit_price x (1 - margin)")
    m5.add_argument("--params", help="CSV sku,dc,lead_time_days,review_period_days overriding the defaults")
    _add_output_arguments(m5, required=True)
    add_config_arguments(m5)
    m5.set_defaults(func=run_import_m5)


def _add_output_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--out", required=required,
                        help="output folder" if required else "also write the validated dataset here")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="parquet", help="file format to write")


def _config(args: argparse.Namespace, flags: dict[str, object]):
    """The config file plus --set overrides plus the command's own flags (those given win)."""
    given = [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]  # JSON is YAML
    return load_config(args.config, [*args.overrides, *given])


def run_synth(args: argparse.Namespace) -> int:
    cfg = _config(args, {"data.synth.units": args.units, "data.synth.days": args.days, "seed": args.seed})
    ds = synthesize(cfg.data.synth, cfg.seed)
    write_dataset(ds, args.out, fmt=args.fmt)
    print_summary(ds, f"synthetic catalogue written to {args.out}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    cfg = _config(args, {"data.fill_missing_days": args.fill_missing_days})
    ds = load_dataset(args.dir, fill_missing_days=cfg.data.fill_missing_days)
    if args.out:
        write_dataset(ds, args.out, fmt=args.fmt)
    print_summary(ds, f"{args.dir}: valid" + (f", written to {args.out}" if args.out else ""))
    return 0


def run_import_m5(args: argparse.Namespace) -> int:
    cfg = _config(args, {"data.m5.lead_time_days": args.lead_time_days,
                         "data.m5.review_period_days": args.review_period_days,
                         "data.m5.margin": args.margin, "data.m5.params_file": args.params})
    ds = import_m5(args.dir, cfg.data.m5)
    write_dataset(ds, args.out, fmt=args.fmt)
    print_summary(ds, f"M5 data imported to {args.out}")
    return 0


def print_summary(ds: Dataset, title: str) -> None:
    s = summarize(ds)
    print(title)
    print(f"  units {s['units']} ({s['skus']} SKUs), {s['categories']} categories, {s['dcs']} DCs")
    print(f"  days {s['days']}: {s['first_date']} .. {s['last_date']}, {s['observed_unit_days']} observed unit-days")
    print(f"  zero-sales share {s['zero_share']:.1%}, promotion share {s['promo_share']:.1%}")
    for name in ("abc", "xyz", "patterns"):
        print(f"  {name:9s}" + ", ".join(f"{k} {v}" for k, v in s[name].items()))
    if s["extra_attributes"]:
        print(f"  extra attributes: {', '.join(s['extra_attributes'])}")
