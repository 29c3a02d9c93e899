"""dasslib.experiments.aum: ablation grid, run planning and folders, tables, heatmap, one real tiny run,
and the notebook's parameter profiles."""
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import yaml

from dasslib import models
from dasslib.experiments import aum as X
from dasslib.notebook import check_params
from dasslib.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "03_aum_scratch.ipynb"
TINY_AUM = {"embed_dim": 8, "depth": 1, "d_state": 2}
TINY_AST = {"embed_dim": 8, "depth": 1, "num_heads": 2, "fstride": 16, "tstride": 16}


def test_ablation_grid_is_in_table_order_and_accepts_aliases():
    grid = X.ablation_grid(["bi_bi", "fo_fo"], ["tail", "mid", "head", "middle"])
    assert grid == [(v, c) for v in ("fo_fo", "bi_bi") for c in ("head", "middle", "tail")]
    assert X.ablation_grid(["fo_bi"], ["end"]) == [("fo_bi", "tail")]


@pytest.mark.parametrize("variants, cls, match", [
    (["fo_bo"], ["head"], "unknown variant"), (["fo_bi"], ["top"], "unknown cls position"),
    ([], ["head"], "at least one variant"), (["fo_bi"], [], "at least one cls")])
def test_ablation_grid_rejects_bad_choices(variants, cls, match):
    with pytest.raises(ValueError, match=match):
        X.ablation_grid(variants, cls)


def test_sections_map_to_model_config():
    sec = X.aum_section("aum_tiny", TINY_AUM, "fo_fo", "middle")
    assert sec == dict(name="aum_tiny", **TINY_AUM, bimamba="none", cls_position="mid")
    name = sec.pop("name")
    cfg = models.get_config(name, **sec)
    assert (cfg.bimamba, cfg.cls_position, cfg.embed_dim) == ("none", "mid", 8)


def test_plan_runs_shares_the_table1_aum_with_the_fo_bi_middle_cell(tmp_path):
    plan = X.plan_runs("ast_tiny", TINY_AST, "aum_tiny", TINY_AUM, ["fo_bi", "bi_bi"], ["middle", "head"], 256)
    assert list(plan) == ["AST", "AuM", ("fo_bi", "head"), ("fo_bi", "middle"), ("bi_bi", "head"),
                          ("bi_bi", "middle")]
    assert all(s["input_tdim"] == 256 for s in plan.values())
    train, loader = dict(epochs=1), dict(batch_size=4)
    dirs = {k: X.run_dir(tmp_path, s, train, loader, None, None) for k, s in plan.items()}
    assert dirs["AuM"] == dirs[("fo_bi", "middle")]
    assert len(set(dirs.values())) == 5
    assert dirs[("bi_bi", "head")].name.startswith("aum_tiny-bi_bi-head-")
    # anything that changes the result changes the folder
    s = plan["AST"]
    assert X.run_dir(tmp_path, s, dict(epochs=2), loader, None, None) != dirs["AST"]
    assert X.run_dir(tmp_path, s, train, loader, None, {"mixup": 0.5}) != dirs["AST"]
    assert X.run_dir(tmp_path, s, train, dict(batch_size=8), None, None) != dirs["AST"]


def _result(m, p=1.0):
    return dict(params_M=p, mAP=m, mAUC=0.5 + m / 2, d_prime=0.1, run="r")


def test_tables_have_the_paper_shapes(tmp_path):
    results = {"AST": _result(0.1, 5.7), "AuM": _result(0.3, 6.4)}
    for i, (v, c) in enumerate(X.ablation_grid(list(X.VARIANTS), list(X.CLS_POSITIONS))):
        results[(v, c)] = _result(i / 10)
    t1 = X.table1(results)
    assert list(t1.index) == ["AST", "AuM"] and list(t1.columns) == ["params_M", "mAP"]
    assert t1.loc["AuM", "mAP"] == 0.3
    t2 = X.table2(results)
    assert t2.shape == (3, 3)
    assert list(t2.index) == ["Fo-Fo", "Fo-Bi", "Bi-Bi"] and list(t2.columns) == ["head", "middle", "tail"]
    assert t2.loc["Fo-Bi", "tail"] == pytest.approx(0.5) and t2.loc["Bi-Bi", "head"] == pytest.approx(0.6)
    comb = X.combined_table(results)
    assert len(comb) == 11 and list(comb.columns) == ["table", "params_M", "mAP", "mAUC"]
    assert list(comb["table"]) == [1, 1] + [2] * 9 and comb.index[2] == "AuM Fo-Fo head"
    fig = X.plot_table2(t2)
    assert sorted(t.get_text() for t in fig.axes[0].texts)[-1] == f"{t2.max().max():.3f}"   # annotated cells
    assert len(fig.axes[0].texts) == 9
    with_chance = X.combined_table(results, chance=0.08)
    assert len(with_chance) == 12 and with_chance.loc["constant predictor", "mAP"] == 0.08
    assert with_chance.loc["constant predictor", "table"] == 0
    assert X.plot_table2(t2, chance=0.08).axes[0].get_title().endswith("(constant predictor: 0.080)")
    plt.close("all")
    partial = X.table2({("bi_bi", "tail"): _result(0.2), ("fo_bi", "head"): _result(0.4)})
    assert list(partial.index) == ["Fo-Bi", "Bi-Bi"] and list(partial.columns) == ["head", "tail"]
    assert math.isnan(partial.loc["Fo-Bi", "tail"])
    with pytest.raises(ValueError, match="no ablation cells"):
        X.table2({"AST": _result(0.1)})


def test_run_all_trains_each_distinct_run_once(toy, tmp_path):
    """Real tiny runs on the 4-clip tone dataset (train = eval), through train_classifier."""
    paths = dict(train_json=toy["json"], eval_json=toy["json"], label_csv=toy["csv"])
    plan = X.plan_runs("ast_tiny", TINY_AST, "aum_tiny", TINY_AUM, ["fo_bi"], ["middle"], 128)
    train = dict(epochs=1, lr=1e-3, warmup_steps=1, warmup_every=1, wa=False, progress=False, seed=0)
    logs = []
    results = X.run_all(plan, tmp_path, paths, (0.0, 1.0), train, dict(batch_size=2, num_workers=0),
                        audio=dict(target_length=128), augment=dict(freqm=4), log=logs.append)
    assert len(logs) == 2 and results["AuM"] is results[("fo_bi", "middle")]
    # each run's mAP, recomputed from its saved final weights on the eval clips: average precision per
    # class written out (mean precision at the rank of each positive), float64, averaged over the classes
    import numpy as np
    import torch

    from dasslib.data import AudioConf, AudioDataset
    from dasslib.experiments.common import load_classifier

    ev = AudioDataset(toy["json"], toy["csv"], AudioConf(target_length=128, mean=0.0, std=1.0))
    x = torch.stack([ev[i][0] for i in range(len(ev))])
    y = torch.stack([ev.target(i) for i in range(len(ev))]).numpy()
    for key, r in results.items():
        model = load_classifier(dict(plan[key], checkpoint=str(tmp_path / r["run"] / "model_final.pt")),
                                toy["csv"], dict(target_length=128)).eval()
        with torch.no_grad():
            scores = model(x).double().numpy()
        aps = []
        for c in range(y.shape[1]):
            order = np.argsort(-scores[:, c], kind="stable")
            hits = y[order, c]
            aps.append(float(np.mean([hits[:k + 1].mean() for k in np.flatnonzero(hits)])))
        assert r["mAP"] == pytest.approx(np.mean(aps), abs=1e-6), key
        assert (tmp_path / r["run"] / "metrics.json").is_file()
    metrics = json.loads((tmp_path / results["AuM"]["run"] / "metrics.json").read_text())
    assert metrics["final"]["mAP"] == pytest.approx(results["AuM"]["mAP"])
    runs = X.runs_table(results)
    assert list(runs.index) == ["AST", "AuM", "fo_bi/middle"]
    # the models really were built from the sections (params differ between AST and AuM)
    n_aum = sum(p.numel() for p in models.create("aum_tiny", num_classes=3, input_tdim=128, **TINY_AUM).parameters())
    assert results["AuM"]["params_M"] == pytest.approx(n_aum / 1e6)


def _notebook_defaults():
    nb = json.loads(NOTEBOOK.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    ns = {}
    exec("".join(cell["source"]), ns)
    return {k: v for k, v in ns.items() if k != "__builtins__"}


@pytest.mark.parametrize("profile", ["ci", "gpu", "paper"])
def test_param_profiles_are_valid(profile):
    defaults = _notebook_defaults()
    values = yaml.safe_load((ROOT / "params" / profile / "03_aum_scratch.yaml").read_text())
    P = check_params({**defaults, **values}, defaults["_defaults"])
    TrainConfig.from_dict(dict(P.train, seed=P.seed))
    X.plan_runs(P.ast_model, P.ast_overrides, P.aum_model, P.aum_overrides, P.variants, P.cls_positions,
                P.target_length)
    models.get_config(P.ast_model, **P.ast_overrides)
    models.get_config(P.aum_model, **P.aum_overrides)
    if profile == "ci":
        assert {k: v for k, v in values.items()} == {k: v for k, v in P.items()}


def test_train_classifier_passes_audio_and_augment_settings(toy, tmp_path, monkeypatch):
    """Shared fix: train_classifier's ``audio`` reaches both splits, ``augment`` only the training one."""
    from dasslib.experiments.common import train_classifier
    from dasslib.train import builders

    seen = {}

    def capture(config):
        seen.update(config)
        raise RuntimeError("captured")

    monkeypatch.setattr(builders, "build_audioset", capture)
    paths = dict(train_json=toy["json"], eval_json=toy["json"], label_csv=toy["csv"])
    with pytest.raises(RuntimeError, match="captured"):
        train_classifier(tmp_path, dict(name="aum_tiny"), paths, (1.0, 2.0), dict(seed=3), {},
                         audio=dict(target_length=128), augment=dict(freqm=4, mixup=0.5))
    assert seen["data"]["train_audio"] == dict(target_length=128, freqm=4, mixup=0.5, mean=1.0, std=2.0, seed=3)
    assert seen["data"]["eval_audio"] == dict(target_length=128, mean=1.0, std=2.0)
