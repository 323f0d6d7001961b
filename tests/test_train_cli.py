"""``orpr pretrain`` then ``orpr finetune`` end to end on a tiny catalogue (stages in-process, labels on Ray)."""
from __future__ import annotations

import json

import pytest
import yaml

from model_helpers import tiny_config, tiny_dataset
from orpr_ray.cli import main
from orpr_ray.core.artifacts import read_manifest
from orpr_ray.data.io import load_dataset, write_dataset
from orpr_ray.model.policy import load_policy
from orpr_ray.train.rules import RULE_QUANTILES, rule_name

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def inputs(ray_session, tmp_path_factory):
    from orpr_ray.label.driver import run_labels

    root = tmp_path_factory.mktemp("cli")
    cfg = tiny_config()
    write_dataset(tiny_dataset(cfg), root / "data")
    run_labels(load_dataset(root / "data"), root / "labels", label=cfg.label, sim=cfg.sim,
               config=cfg.model_dump(mode="json"))
    config_file = root / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return root, config_file


def test_pretrain_then_finetune(inputs, tmp_path, capsys):
    root, config_file = inputs
    pre = tmp_path / "pre"
    args = ["pretrain", "--data", str(root / "data"), "--labels", str(root / "labels"), "--out", str(pre),
            "--config", str(config_file)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[forecast] epoch 2/2" in printed and "[decision] epoch 2/2" in printed
    assert "test within+-3: model" in printed
    manifest = read_manifest(pre)
    assert manifest["stage"] == "pretrain"
    assert set(manifest["outputs"]) == {"forecaster/model.pt", "policy/model.pt", "report.json"}
    report = json.loads((pre / "report.json").read_text())
    forecast = report["forecast"]["forecast"]["val"]
    assert forecast["wape"] > 0 and forecast["seasonal_wape"] > 0 and forecast["naive_wape"] > 0
    test = report["decision"]["decision"]["test"]
    assert test["points"] > 0
    for name in ("model", "previous_label", "category_median"):
        assert 0 <= test[name]["within_3"] <= 1
        assert test[name]["simulated"]["total_cost"] > 0
    assert test["labels"]["simulated"]["in_stock_rate"] > 0
    assert "decision.test_total_cost.labels" in manifest["figures"]
    _, meta = load_policy(pre)
    assert meta.stage == "decision" and set(meta.sources) == {"data", "labels"}

    assert main(args) == 0  # finished: not redone
    assert "already holds this run's results" in capsys.readouterr().out
    for later in ("rl.beta=0.2", "evaluate.bootstrap_samples=20", "classic.sim_warmup=50"):  # later stages' settings
        assert main([*args, "--set", later]) == 0
        assert "already holds this run's results" in capsys.readouterr().out
    assert main([*args, "--set", "train.kl_weight=0.02"]) == 0  # its own settings do retrain
    assert "already holds" not in capsys.readouterr().out

    fine = tmp_path / "fine"
    assert main(["finetune", "--pretrained", str(pre), "--out", str(fine)]) == 0
    assert "[finetune] epoch 2/2" in capsys.readouterr().out
    assert read_manifest(fine)["stage"] == "finetune"
    _, meta = load_policy(fine)
    assert meta.stage == "finetune" and "pretrained" in meta.sources
    report = json.loads((fine / "report.json").read_text())["finetune"]
    costs = report["decision_rule"]["validation_cost"]
    assert set(costs) == {rule_name(q) for q in RULE_QUANTILES}
    assert report["decision_rule"]["chosen"] == min(costs, key=costs.get)  # read on validation, not test
    assert rule_name(meta.decision_quantile) == report["decision_rule"]["chosen"]  # and stored in the checkpoint


def test_finetune_refuses_a_checkpoint_of_another_config(inputs, tmp_path, capsys):
    root, config_file = inputs
    pre = tmp_path / "pre"
    main(["pretrain", "--data", str(root / "data"), "--labels", str(root / "labels"), "--out", str(pre),
          "--config", str(config_file), "--set", "train.forecast.epochs=1", "--set", "train.decision.epochs=1"])
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main(["finetune", "--pretrained", str(pre), "--out", str(bad), "--set", "model.fused_dim=48"]) == 2
    err = capsys.readouterr().err
    assert "model.fused_dim: 32 in the checkpoint, 48 now" in err
    assert not (bad / "manifest.json").exists()


def test_missing_inputs_fail_before_any_output(inputs, tmp_path, capsys):
    root, config_file = inputs
    out = tmp_path / "out"
    assert main(["pretrain", "--data", str(root / "data"), "--labels", str(tmp_path / "nowhere"), "--out", str(out),
                 "--config", str(config_file)]) == 2
    assert "no finished label run here" in capsys.readouterr().err
    assert main(["finetune", "--pretrained", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "not a finished `orpr pretrain` output" in capsys.readouterr().err
    assert not (out / "manifest.json").exists()
