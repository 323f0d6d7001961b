"""``orpr serve`` (run the decision service) and ``orpr decide`` (send a demand file to it).

Heavy imports (Ray Serve, torch) happen inside the commands, so ``orpr --help`` stays quick.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from orpr_ray.cli import add_config_arguments
from orpr_ray.core.errors import InputError


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="serve the policy over HTTP with Ray Serve (docs/SERVING.md)",
                                  description=__doc__.splitlines()[0])
    serve.add_argument("--checkpoint", required=True, help="checkpoint folder (model.pt, or a stage output "
                                                           "folder with policy/model.pt)")
    serve.add_argument("--replicas", type=int, help="replicas of the deployment; default serve.replicas")
    serve.add_argument("--host", help="bind address; default serve.host (127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, help="HTTP port; default serve.port")
    add_config_arguments(serve)
    serve.set_defaults(func=run_serve)

    decide = subparsers.add_parser("decide", help="send units to a running service and write its decisions")
    decide.add_argument("--url", required=True, help="service address, e.g. http://127.0.0.1:8000")
    decide.add_argument("--data", required=True,
                        help="a JSON file (a list of units, or {\"units\": [...]}), a JSONL file (one unit per "
                             "line), or a dataset folder (demand + units files; needs --stock)")
    decide.add_argument("--stock", help="CSV/Parquet with sku, dc, on_hand, on_order (for a dataset folder)")
    decide.add_argument("--out", required=True, help="decisions file: .csv, .parquet or .json")
    decide.add_argument("--chunk", type=int, default=None, help="units per request (default: the server's limit)")
    decide.set_defaults(func=run_decide)


def run_serve(args: argparse.Namespace) -> int:
    from ray import serve

    from orpr_ray.config import load_config
    from orpr_ray.core.ray_env import ensure_ray
    from orpr_ray.serve.app import run_service

    flags = {"serve.replicas": args.replicas, "serve.host": args.host, "serve.port": args.port}
    given = [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]  # JSON is YAML
    cfg = load_config(args.config, [*args.overrides, *given])
    ensure_ray()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it like Ctrl-C: Serve shut down cleanly
    print(f"orpr serve: starting {cfg.serve.replicas} replica(s) on http://{cfg.serve.host}:{cfg.serve.port} "
          f"(docs at /docs); Ctrl-C or SIGTERM stops it", file=sys.stderr)
    try:
        run_service(args.checkpoint, cfg, blocking=True)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_decide(args: argparse.Namespace) -> int:
    from orpr_ray.serve.client import DecisionClient, ServiceError
    from orpr_ray.serve.schemas import MAX_BATCH_UNITS

    try:
        with DecisionClient(args.url) as client:
            units = _read_units(Path(args.data), args.stock, client)
            answer = client.decide_batch(units, chunk=args.chunk or MAX_BATCH_UNITS)
    except ServiceError as exc:
        print(f"orpr decide: error: {exc}", file=sys.stderr)
        return 1
    write_decisions(answer["decisions"], answer["model_version"], Path(args.out))
    print(f"orpr decide: {len(answer['decisions'])} decisions of model {answer['model_version']} written to "
          f"{args.out}", file=sys.stderr)
    return 0


def _read_units(path: Path, stock: str | None, client) -> list[dict]:
    """Request units from a JSON / JSONL file, or from a dataset folder plus a stock file."""
    if path.is_dir():
        from orpr_ray.data.io import load_dataset
        from orpr_ray.serve.client import read_stock, units_from_dataset

        if stock is None:
            raise InputError("a dataset folder needs --stock (on hand and on order per unit)", field="--stock")
        return units_from_dataset(load_dataset(path), read_stock(stock), client.model()["config"], source=str(path))
    if not path.is_file():
        raise InputError("file not found", file=str(path))
    text = path.read_text()
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc}", file=str(path)) from exc
    units = data.get("units") if isinstance(data, dict) else data
    if not isinstance(units, list) or not units:
        raise InputError("expected a non-empty list of units, or {\"units\": [...]}", file=str(path), field="units")
    return units


def write_decisions(decisions: list[dict], version: str, out: Path) -> Path:
    """One row per unit (top targets as JSON text in CSV/Parquet), written atomically."""
    import pandas as pd

    from orpr_ray.core.artifacts import write_json_atomic, write_parquet_atomic, write_text_atomic

    if out.suffix == ".json":
        return write_json_atomic(out, {"model_version": version, "decisions": decisions})
    if out.suffix not in (".csv", ".parquet"):
        raise InputError("unknown output format; use .csv, .parquet or .json", file=str(out))
    frame = pd.DataFrame([{**{k: v for k, v in d.items() if k not in ("forecast", "top", "fallbacks")},
                           "top": json.dumps(d["top"]), "fallbacks": ",".join(d["fallbacks"]),
                           "model_version": version} for d in decisions])
    if out.suffix == ".csv":
        return write_text_atomic(out, frame.to_csv(index=False))
    return write_parquet_atomic(out, frame)
