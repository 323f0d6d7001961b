"""``orpr classic``: JSON and table output on a small instance, and non-zero exits on bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from orpr_ray.classic.benchmark import POLICY_NAMES
from orpr_ray.cli import main

SMALL = ["classic", "--demand", "poisson:3", "--lead-time", "1", "--holding", "1", "--penalty", "4",
         "--periods", "1000", "--replications", "10", "--seed", "3",
         # --policy all trains the learned policy too: a few steps keep the CLI tests quick.
         "--set", "classic.learned.pretrain_steps=20", "--set", "classic.learned.rl_steps=10",
         "--set", "classic.learned.rounds=1", "--set", "classic.learned.relabel_rollouts=4096",
         "--set", "classic.learned.refit_steps=10", "--set", "classic.learned.check_periods=500"]


def test_json_reports_every_policy_with_exact_and_simulated_costs(capsys):
    assert main([*SMALL, "--policy", "all", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["instance"]["lead_time"] == 1 and out["instance"]["penalty"] == 4.0
    assert out["seed"] == 3 and out["settings"]["sim_periods"] == 1000
    reports = {r["policy"]: r for r in out["policies"]}
    assert set(reports) == set(POLICY_NAMES)
    optimum = reports["optimal"]["exact"]["cost"]
    assert reports["optimal"]["gap_to_optimum_pct"] == 0.0
    for name, r in reports.items():
        assert r["exact"]["lower"] <= r["exact"]["cost"] <= r["exact"]["upper"]
        assert r["exact"]["cost"] >= optimum - 1e-6, name
        assert r["gap_to_optimum_pct"] >= -1e-4
        assert r["simulation"]["ci_low"] < r["simulation"]["mean"] < r["simulation"]["ci_high"]
    assert set(reports["capped_base_stock"]["params"]) == {"S", "r"}
    assert set(reports["base_stock"]["params"]) == {"S"}
    assert len(reports["learned"]["params"]["rounds"]) == 1  # the policy-iteration log reaches the JSON


def test_one_policy_exact_only_as_a_table(capsys):
    assert main([*SMALL, "--policy", "base_stock", "--evaluate", "exact"]) == 0
    out = capsys.readouterr().out
    assert "S-bar=" in out and "base_stock" in out and "optimal" not in out
    row = next(line for line in out.splitlines() if line.startswith("base_stock"))
    assert "S=" in row and row.split()[-1] == "-"  # no simulation, no optimum to compare with


def test_beyond_the_exact_limit_policies_are_tuned_and_reported_by_simulation(capsys):
    assert main([*SMALL, "--periods", "300", "--set", "classic.sim_warmup=100", "--set", "classic.max_exact_states=20", "--json"]) == 0
    reports = {r["policy"]: r for r in json.loads(capsys.readouterr().out)["policies"]}
    assert reports["optimal"]["exact"] is None and reports["optimal"]["simulation"] is None
    assert any("max_exact_states" in note for note in reports["optimal"]["notes"])
    for name in ("base_stock", "myopic", "capped_base_stock"):
        assert reports[name]["exact"] is None and reports[name]["simulation"]["mean"] > 0
        assert reports[name]["gap_to_optimum_pct"] is None
    assert reports["constant"]["exact"]["cost"] > 0  # one-dimensional: exact at any size


@pytest.mark.parametrize("args, message", [
    (["--demand", "poisson:0"], "MEAN must be > 0"),
    (["--demand", "uniform:3"], "unknown demand distribution"),
    (["--lead-time", "0"], "lead_time"),
    (["--penalty", "-2"], "penalty"),
    (["--replications", "2"], "classic.sim_replications"),
    (["--set", "classic.tolerance=0"], "classic.tolerance"),
])
def test_bad_input_exits_non_zero_with_a_named_error(capsys, args, message):
    assert main([*SMALL, *args]) != 0
    assert message in capsys.readouterr().err


def test_console_script_exit_status():
    done = subprocess.run([sys.executable, "-m", "orpr_ray.cli", "classic", "--lead-time", "1",
                           "--penalty", "4", "--demand", "negbin:3:1"], capture_output=True, text=True)
    assert done.returncode != 0
    assert "DISPERSION" in done.stderr and not done.stdout
