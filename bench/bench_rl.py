"""RLOO benchmark: sampled actions scored per second, the simulation reward alone and whole learner steps,
against the same decisions stepped one at a time through the gymnasium environment (the RLlib path).

On the demo catalogue (synthetic, default config: 600 units x 730 days, grid 1..60, the default
~0.93M-parameter network, untrained: speed does not depend on the weights), with one torch thread
(as in a Tune trial):
- reward: ``reward.score_actions`` on B states x k sampled actions (one vectorised replay of the
  B x (k + 1) targets over the label horizon) -> states x k per second;
- learner step: ``RLOOLearner.step`` (features, forward, sampling, the reward, RLOO loss, backward,
  optimiser) -> states x k per second, median over steps;
- environment: ``ReplenishmentEnv`` with random actions, one decision per step (observation encoding
  and a one-action replay each) -> decisions per second.
Prints a Markdown entry and adds it to the "RLOO" section of docs/BENCHMARKS.md.

    make bench                      # or: .venv/bin/python bench/bench_rl.py [--no-write]
"""
from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from common import (bench_parser, command_line, dated_entry, machine_and_load,  # noqa: E402  (bench/ is on sys.path)
                    publish)
from orpr_ray.config import OrprConfig  # noqa: E402
from orpr_ray.data.split import time_split  # noqa: E402
from orpr_ray.data.synth import synthesize  # noqa: E402
from orpr_ray.label.candidates import label_horizon  # noqa: E402
from orpr_ray.label.driver import label_shard, plan_shards  # noqa: E402
from orpr_ray.model.checkpoint import CheckpointMeta  # noqa: E402
from orpr_ray.model.features import FeatureStats, PanelFeatures, split_extra_attributes  # noqa: E402
from orpr_ray.model.network import build_model, count_parameters  # noqa: E402
from orpr_ray.rl.env import ReplenishmentEnv  # noqa: E402
from orpr_ray.rl.learner import RLJob, RLOOLearner, sample_states, states_from_labels  # noqa: E402
from orpr_ray.rl.reward import score_actions  # noqa: E402
from orpr_ray.train.report import naive_label_predictions, prepare_labels  # noqa: E402
from orpr_ray.train.stages import label_points  # noqa: E402

SECTION = "## RLOO"


def build_job(cfg: OrprConfig) -> tuple[RLJob, int]:
    """The demo catalogue, its OR labels (computed here, in this process) and an untrained network."""
    ds = synthesize(cfg.data.synth, cfg.seed)
    split = time_split(ds.n_days, cfg.data.split)
    raw = pd.concat([label_shard(ds, u, d, label=cfg.label, sim=cfg.sim).labels
                     for u, d in plan_shards(ds, cfg.label, cfg.sim)]).sort_values(["unit", "day"])
    labels = prepare_labels(raw.reset_index(drop=True), ds, cfg.label.grid, horizon=label_horizon(ds, cfg.label),
                            alpha_source=cfg.train.alpha_source, source="bench")
    labels = labels.join(naive_label_predictions(labels, split, cfg.label.grid))
    points = label_points(labels, split, "train")
    numeric, categorical = split_extra_attributes(ds)
    stats = FeatureStats.fit(PanelFeatures(ds, cfg.model).raw(points.unit, points.day, points.known), numeric,
                             categorical, cfg.model)
    model = build_model(cfg.model, grid_size=len(cfg.label.grid), n_extra_numeric=len(numeric),
                        n_extra_categorical=len(categorical))
    meta = CheckpointMeta(model_config=cfg.model, stats=stats, grid=cfg.label.grid, stage="finetune")
    val = sample_states(states_from_labels(labels, split, "val", cfg), cfg.rl.val_points, cfg.seed)
    job = RLJob(config=cfg.model_dump(mode="json"), ds=ds, meta=meta, init_state=model.state_dict(),
                train=states_from_labels(labels, split, "train", cfg), val=val)
    return job, count_parameters(model)


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def bench_reward(job: RLJob, repeats: int) -> dict:
    cfg, grid = job.cfg, np.asarray(job.meta.grid)
    rng = np.random.default_rng(0)
    batch = job.train.take(rng.integers(len(job.train), size=cfg.rl.batch_states))
    v = grid[rng.integers(len(grid), size=(len(batch), cfg.rl.k))]

    def once():
        score_actions(job.ds, batch.unit, batch.day, v, target=grid[batch.target], current=batch.current,
                      reference=grid[batch.target], cfg=cfg)

    once()  # compile / load the simulator kernel
    seconds = timed(once, repeats)
    return {"median_s": statistics.median(seconds), "per_s": v.size / statistics.median(seconds)}


def bench_steps(job: RLJob, steps: int) -> dict:
    learner = RLOOLearner(job)
    learner.step()  # warm-up
    seconds = timed(learner.step, steps)
    samples = job.cfg.rl.batch_states * job.cfg.rl.k
    return {"median_s": statistics.median(seconds), "per_s": samples / statistics.median(seconds)}


def bench_env(job: RLJob, steps: int) -> dict:
    env = ReplenishmentEnv(job.ds, job.train, job.meta, job.cfg)
    env.reset(seed=0)
    rng = np.random.default_rng(0)

    def run():
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            if terminated or truncated:
                env.reset()

    run_s = timed(run, 1)[0]
    return {"per_s": steps / run_s, "seconds": run_s}




def report(args, cfg: OrprConfig, job: RLJob, n_params: int, results: dict) -> str:
    rl = cfg.rl
    reward, step, env = results["reward"], results["step"], results["env"]
    title = (f"{cfg.data.synth.units} units x {cfg.data.synth.days} days, "
             f"B = {rl.batch_states} states x k = {rl.k}, grid {len(cfg.label.grid)}")
    return dated_entry(title, [
        f"- Command: `{results['command']}` (one torch thread, NUMBA_NUM_THREADS=OMP_NUM_THREADS=1)",
        f"- Machine: {machine_and_load(results['load'])}",
        f"- Network: {n_params:,} parameters (default model config, untrained), trained parts "
        f"{rl.trainable_parts}; {len(job.train):,} training states, replay horizon "
        f"{label_horizon(job.ds, cfg.label)} days",
        f"- Simulation reward alone (`score_actions`, one replay of B x (k + 1) targets): "
        f"**{reward['per_s']:,.0f} states x k per second** (median {reward['median_s'] * 1e3:.1f} ms per batch)",
        f"- Whole learner step (features, forward, sampling, reward, RLOO loss, backward, AdamW): "
        f"**{step['per_s']:,.0f} states x k per second** (median {step['median_s']:.3f} s per step of "
        f"{rl.batch_states * rl.k} samples, {args.steps} steps)",
        f"- Same decisions one at a time through the gymnasium environment (random actions, the RLlib path, no "
        f"network or update): {env['per_s']:,.0f} decisions per second, **{step['per_s'] / env['per_s']:.0f}x** "
        f"fewer than the learner's batched path",
    ])




def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--units", type=int, default=600, help="synthetic units (the demo catalogue has 600)")
    parser.add_argument("--states", type=int, default=128, help="states per step (rl.batch_states)")
    parser.add_argument("--k", type=int, default=8, help="actions per state (rl.k)")
    parser.add_argument("--steps", type=int, default=10, help="learner steps timed")
    parser.add_argument("--repeats", type=int, default=10, help="reward batches timed")
    parser.add_argument("--env-steps", type=int, default=300, help="environment steps timed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_start = os.getloadavg()[0]
    cfg = OrprConfig.model_validate({"data": {"synth": {"units": args.units}},
                                     "rl": {"batch_states": args.states, "k": args.k}})
    job, n_params = build_job(cfg)
    results = {"command": command_line(__file__),
               "reward": bench_reward(job, args.repeats), "step": bench_steps(job, args.steps),
               "env": bench_env(job, args.env_steps)}
    results["load"] = (load_start, os.getloadavg()[0])
    entry = report(args, cfg, job, n_params, results)
    publish(SECTION, entry, write=not args.no_write)


if __name__ == "__main__":
    main()
