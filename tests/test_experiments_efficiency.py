"""dasslib.experiments.efficiency: specs with overrides, parameter counts, budgeted sweep and
capacity search, the stable status table, win verdicts and the AuM claim table."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dasslib import bench, models
from dasslib.experiments import efficiency as E
from dasslib.notebook import check_params

ROOT = Path(__file__).resolve().parents[1]

TINY = {"ast": {"embed_dim": 16, "depth": 1, "num_heads": 2, "fstride": 16, "tstride": 16},
        "dass": {"depths": [1, 1, 1, 1], "dims": [4, 8, 8, 8]},
        "dass_small": {"dims": [8, 8, 8, 8]}}


def test_study_specs_labels_overrides_and_scan_backend():
    specs = E.study_specs(["ast_base", "dass_small"], overrides=TINY, scan_backend="torch")
    assert [s.label for s in specs] == ["ast_base_eager", "ast_base_sdpa", "dass_small"]
    ast, dass = specs[1].factory, specs[2].factory
    assert "scan_backend" not in ast.overrides and ast.overrides["attn"] == "sdpa"
    assert dass.overrides == {"depths": [1, 1, 1, 1], "dims": [8, 8, 8, 8], "scan_backend": "torch"}
    assert specs[2].mel_bins == 128 and E.study_specs("ssam_tiny")[0].mel_bins == 80
    assert [s.label for s in E.study_specs(["ast_small"], ast_attn=["sdpa"])] == ["ast_small_sdpa"]
    assert len(E.study_specs(["dass_small"], overrides={"aum": {"depth": 2}})) == 1   # unused entry
    with pytest.raises(ValueError, match="neither"):
        E.study_specs(["dass_small"], overrides={"dass_smal": {"depths": [1, 1, 1, 1]}})
    with pytest.raises(ValueError, match="no scan_backend"):
        E.study_specs(["ast_small"], overrides={"ast": {"scan_backend": "torch"}})


def test_param_counts_match_built_models():
    specs = E.study_specs(["ast_base", "dass_small"], overrides=TINY)
    counts = E.param_counts(specs).set_index("model")["params"]
    built = models.create("dass_small", **{**TINY["dass"], **TINY["dass_small"]})
    assert counts["dass_small"] == sum(p.numel() for p in built.parameters())
    assert counts["ast_base_eager"] == counts["ast_base_sdpa"] > 0
    full = E.param_counts(E.study_specs(["dass_small"]))["params"].item()
    assert full == 29_884_463                                   # docs/models.md, = official


def test_budgeted_sweep_runs_then_skips_past_the_budget():
    specs = E.study_specs(["ast_base", "dass_small"], overrides=TINY, ast_attn=["sdpa"], scan_backend="torch")
    kw = dict(device="cpu", warmup=0, repeats=1, progress=False, batch={"inference": 1, "train": 2})
    df = E.budgeted_sweep(specs, [0.32, 0.64], **kw)
    assert list(df.columns) == bench.COLUMNS and len(df) == 2 * 2 * 2
    assert set(df["status"]) == {"ok"} and (df["median_ms"] > 0).all()
    assert df["mode"].tolist()[:4] == ["inference"] * 4                  # modes outer
    assert (df.loc[df["mode"] == "train", "batch"] == 2).all()
    skipped = E.budgeted_sweep(specs, [0.32, 0.64], budget_s=0.0, **kw)
    assert len(skipped) == 8 and set(skipped["status"]) == {"skipped"}
    assert set(skipped["note"]) == {f"study time budget: the {m} allotment of 0 s is spent" for m in bench.MODES}
    assert skipped["frames"].tolist()[:2] == [32, 64] and (skipped["wall_s"] == 0).all()
    assert set(E.status_table(skipped, E.param_counts(specs))["0.32 s"]) == {"skip-budget"}


def test_budgeted_capacity_caps_and_budget():
    specs = E.study_specs(["dass_small"], overrides=TINY, scan_backend="torch")
    caps = E.budgeted_capacity(specs, max_length_s=0.5, device="cpu", frames_per_s=100)
    assert caps["mode"].tolist() == list(bench.MODES) and set(caps["bound"]) == {"max_frames"}
    assert caps["max_length_s"].tolist() == [0.5, 0.5] and caps["max_frames"].tolist() == [50, 50]
    none = E.budgeted_capacity(specs, modes="inference", budget_s=0.0)
    assert none["bound"].tolist() == ["budget"] and math.isnan(none["max_length_s"].item())


def test_sweep_bounds_and_capacity_seeded_by_a_sweep():
    sweep = pd.DataFrame([
        dict(model="m", mode="inference", batch=1, frames=100, status="ok"),
        dict(model="m", mode="inference", batch=1, frames=1000, status="ok"),
        dict(model="m", mode="inference", batch=1, frames=3000, status="oom"),
        dict(model="m", mode="train", batch=4, frames=100, status="ok"),
        dict(model="m", mode="train", batch=4, frames=1000, status="oom"),   # at batch 4: says nothing at 1
        dict(model="m", mode="train", batch=4, frames=3000, status="skipped"),
    ])
    assert E.sweep_bounds(sweep, "m", "inference", 1) == (1000, 3000)
    assert E.sweep_bounds(sweep, "m", "train", 1) == (100, None)
    assert E.sweep_bounds(sweep, "m", "train", 8) == (None, 1000)
    assert E.sweep_bounds(sweep, "other", "train", 1) == (None, None)
    specs = E.study_specs(["dass_small"], overrides=TINY, scan_backend="torch")
    seeded = pd.DataFrame([dict(model="dass_small", mode=m, batch=1, frames=50, status="ok") for m in bench.MODES])
    caps = E.budgeted_capacity(specs, max_length_s=0.5, device="cpu", frames_per_s=100, sweep=seeded)
    assert caps["max_frames"].tolist() == [50, 50] and caps["probes"].tolist() == [0, 0]   # no probe needed


def synthetic():
    """AST time 0.5 L^2 (OOM from 8 s), SSM 1.5 L: the SSM is faster from 3 s; memory AST 2 L^2,
    SSM 4 L: less memory from 2 s."""
    rows = []
    for model, t, m, oom in (("ast_base_sdpa", lambda L: 0.5 * L**2, lambda L: 2 * L**2, 8),
                             ("ast_small_eager", lambda L: 0.2 * L**2, lambda L: L**2, 8),
                             ("ssm", lambda L: 1.5 * L, lambda L: 4 * L, None)):
        for mode in ("inference", "train"):
            for L in (1, 2, 4, 8, 16, 32):
                ok = oom is None or L < oom
                rows.append(dict(model=model, mode=mode, batch=1, length_s=float(L), status="ok" if ok else "oom",
                                 median_ms=t(L) if ok else math.nan, peak_mem_mb=m(L) if ok else math.nan,
                                 throughput_audio_s_per_s=L / (t(L) / 1e3) if ok else math.nan))
    return pd.DataFrame(rows)


def test_win_table_and_text_are_computed_from_the_sweep():
    df = synthetic()
    wins = E.win_table(df)
    assert set(wins["model"]) == {"ssm"} and len(wins) == 4             # 2 modes x 2 metrics, AST excluded
    t = wins[(wins["metric"] == "median_ms") & (wins["mode"] == "inference")].iloc[0]
    assert t["crossover_length_s"] == pytest.approx(3.0) and t["ratio_at_shortest"] == pytest.approx(3.0)
    m = wins[wins["metric"] == "peak_mem_mb"].iloc[0]
    assert m["crossover_length_s"] == pytest.approx(2.0)
    text = E.win_text(wins)
    assert "inference, time vs ast_base_sdpa: 1 of 1" in text and "faster from 3 s" in text
    assert "uses less memory from 2 s" in text and "runs up to 32 s" in text
    cpu = df.assign(peak_mem_mb=math.nan)                                # no memory counter: time only
    assert set(E.win_table(cpu)["metric"]) == {"median_ms"}
    with pytest.raises(ValueError):
        E.win_table(df.assign(median_ms=math.nan, peak_mem_mb=math.nan))


def test_status_table_and_claims():
    df = synthetic()
    params = pd.DataFrame(dict(model=["ast_base_sdpa", "ast_small_eager", "ssm"], params=[3, 2, 1]))
    caps = pd.DataFrame(dict(model=["ssm"], mode=["train"], max_length_s=[100.0], bound=["memory"]))
    table = E.status_table(df, params, caps)
    assert len(table) == 6 and list(table.columns[:3]) == ["model", "mode", "params"]
    assert table["model"].tolist()[:3] == ["ast_base_sdpa", "ast_small_eager", "ssm"]
    row = table[(table["model"] == "ast_base_sdpa") & (table["mode"] == "inference")].iloc[0]
    assert row["4 s"] == "ok" and row["8 s"] == "oom" and row["params"] == 3
    assert table.set_index(["model", "mode"]).loc[("ssm", "train"), "fits_up_to_s"] == 100.0
    why = {"ast_base_sdpa": "after oom at 8 s", "ast_small_eager": "time budget: 3 calls", "ssm": "study time budget"}
    notes = df.assign(status="skipped", note=df["model"].map(why))
    assert set(E.status_table(notes, params)["1 s"]) == {"skip-oom", "skip-time", "skip-budget"}

    claims = E.claim_table(df, claims=(("c", "ssm", "ast_small_eager", "train", "peak_mem_mb", 4.0),
                                       ("absent", "aum_base", "ast_base_eager", "inference", "median_ms", 80.0)))
    assert claims["claim"].tolist() == ["c"] and claims["ratio"].item() == pytest.approx(16 / 16)
    assert E.claim_table(df).empty                                       # no AuM rows swept


def test_check_labels_names_the_missing_role():
    specs = E.study_specs(["ast_base", "dass_medium"], ast_attn=["sdpa"])
    E.check_labels(specs, baseline="ast_base_sdpa", ratio_model="dass_medium")
    with pytest.raises(ValueError, match=r"ratio_model='dass_small'.*not among the measured models"):
        E.check_labels(specs, baseline="ast_base_sdpa", ratio_model="dass_small")
    with pytest.raises(ValueError, match="baseline='ast_base'"):
        E.check_labels(specs, baseline="ast_base")


@pytest.mark.parametrize("files", [["ci/05_efficiency"], ["gpu/05_efficiency"], ["paper/05_efficiency"],
                                   ["gpu/05_efficiency", "gpu/05_efficiency_capacity"]],
                         ids=["ci", "gpu", "paper", "gpu+capacity"])
def test_param_profiles_are_valid(files):
    """Every 05 profile (the capacity overlay merged after the gpu file, as papermill merges -f
    files) names only notebook parameters of the right types, and its models, overrides, baseline
    and ratio model make a study."""
    nb = json.loads((ROOT / "notebooks" / "05_efficiency.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    ns = {}
    exec("".join(cell["source"]), ns)
    values = {}
    for f in files:
        values.update(yaml.safe_load((ROOT / "params" / f"{f}.yaml").read_text()))
    P = check_params({**ns, **values}, ns["_defaults"])
    specs = E.study_specs(P.models, P.ast_attn, P.overrides, P.scan_backend)
    E.check_labels(specs, baseline=P.baseline, ratio_model=P.ratio_model)
    for mode in P.modes + (P.capacity_modes or []):
        bench.steps.check_mode(mode)
