"""dasslib.bench on CPU with toy models: sweep rows, OOM path, time budget, capacity search,
crossover / ratio analysis and the scaling plot."""
import math
import time

import matplotlib
import pandas as pd
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from dasslib import bench  # noqa: E402

F_BINS = 8


class QuadraticToy(nn.Module):
    """Single-head self-attention over frames: (B, T, F) -> (B, C), cost ~ T^2."""

    def __init__(self, dim=16, num_classes=5):
        super().__init__()
        self.proj, self.qkv, self.head = nn.Linear(F_BINS, dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, num_classes)

    def num_tokens(self, frames, mel_bins):
        return frames

    def forward(self, x):
        q, k, v = self.qkv(self.proj(x)).chunk(3, dim=-1)
        attn = torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, dim=-1)   # (B, T, T)
        return self.head((attn @ v).mean(1))


class ConvToy(nn.Module):
    """Temporal convolution: (B, T, F) -> (B, C), cost ~ T; exposes no token count."""

    def __init__(self, dim=16, num_classes=5):
        super().__init__()
        self.conv, self.head = nn.Conv1d(F_BINS, dim, 3, padding=1), nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.head(self.conv(x.transpose(1, 2)).mean(-1))


class OOMToy(ConvToy):
    """Raises CUDA's out-of-memory error for inputs longer than ``limit`` frames."""
    limit = 30

    def forward(self, x):
        if x.shape[1] > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (toy, T={x.shape[1]})")
        return super().forward(x)


class SleepToy(ConvToy):
    """Takes 1 ms per frame."""

    def forward(self, x):
        time.sleep(1e-3 * x.shape[1])
        return super().forward(x)


def spec(factory, label):
    return bench.model_spec(factory, label=label, mel_bins=F_BINS)


def sweep(specs, lengths_s, **kw):
    kw = dict(device="cpu", warmup=1, repeats=3, progress=False, **kw)
    return bench.run_sweep(specs, lengths_s, **kw)


def test_sweep_rows_and_columns():
    df = sweep([spec(QuadraticToy, "quad"), spec(ConvToy, "conv")], [0.1, 0.2, 0.4], batch={"inference": 2, "train": 3})
    assert list(df.columns) == bench.COLUMNS
    assert len(df) == 2 * 2 * 3
    assert set(df["status"]) == {"ok"}
    assert (df["median_ms"] > 0).all() and (df["p10_ms"] <= df["median_ms"]).all()
    assert (df["median_ms"] <= df["p90_ms"]).all()
    assert df["peak_mem_mb"].isna().all()                      # no peak counter on CPU
    assert set(df["dtype"]) == {"float32"} and set(df["device"]) == {"cpu"}
    assert sorted(df["frames"].unique()) == [10, 20, 40]
    assert (df.loc[df["mode"] == "train", "batch"] == 3).all()
    expected = df["batch"] * df["length_s"] / (df["median_ms"] / 1e3)
    assert (df["throughput_audio_s_per_s"] - expected).abs().max() < 1e-9
    quad, conv = df[df["model"] == "quad"], df[df["model"] == "conv"]
    assert quad["tokens"].tolist() == [10, 20, 40] * 2 and conv["tokens"].isna().all()


def test_train_step_updates_weights_and_frees_grads():
    model = ConvToy()
    before = model.head.weight.detach().clone()
    step = bench.make_step(model, "train", torch.randn(2, 12, F_BINS), optimizer="sgd", lr=0.5)
    step()
    assert not torch.equal(before, model.head.weight)
    assert all(p.grad is None for p in model.parameters())
    bench.make_step(model, "inference", torch.randn(2, 12, F_BINS))()
    assert not model.training


def test_oom_is_recorded_then_longer_lengths_skipped():
    df = sweep([spec(OOMToy, "oomy"), spec(ConvToy, "conv")], [0.1, 0.2, 0.4, 0.8])
    for mode in bench.MODES:
        rows = df[(df["model"] == "oomy") & (df["mode"] == mode)]
        assert rows["status"].tolist() == ["ok", "ok", "oom", "skipped"]
        assert rows["median_ms"].iloc[2:].isna().all()
        assert "oom at 0.4 s" in rows["note"].iloc[3]
    assert (df.loc[df["model"] == "conv", "status"] == "ok").all()   # the sweep went on


def test_other_errors_are_recorded_or_raised():
    def broken():
        return nn.Linear(3, 2)                 # wrong input width: a shape error, not an OOM
    df = sweep([spec(broken, "broken")], [0.1], modes="inference")
    assert df["status"].tolist() == ["error"] and "RuntimeError" in df["note"].iloc[0]
    with pytest.raises(RuntimeError):
        sweep([spec(broken, "broken")], [0.1], modes="inference", errors="raise")


def test_time_budget_skips_long_lengths():
    df = sweep([spec(SleepToy, "sleepy")], [0.1, 0.2, 0.4, 1.6], modes="inference", max_seconds_per_point=0.15)
    status = df["status"].tolist()
    assert status[0] == "ok" and status[-1] == "skipped"        # 2 calls of >= 1.6 s predicted
    first_skip = status.index("skipped")
    assert set(status[first_skip:]) == {"skipped"} and "time budget" in df["note"].iloc[first_skip]
    ok = df[df["status"] == "ok"]
    assert (ok["repeats"] >= 1).all() and (ok["repeats"] <= 3).all()


def test_time_step_budget_cuts_repeats():
    timing = bench.time_step(lambda: time.sleep(0.02), "cpu", warmup=1, repeats=50, max_seconds=0.1)
    assert 1 <= len(timing.times_ms) <= 4 and timing.median_ms >= 20


def test_largest_fitting_length_with_predicate():
    boundary = 12_345
    res = bench.largest_fitting_length(fits=lambda f: f <= boundary, start_frames=100,
                                       abs_tol_frames=10, rel_tol=0.0)
    assert res.bound == "memory" and res.frames <= boundary < res.frames + 10
    assert res.length_s == res.frames / 100
    assert (6_400, True) in res.probes and (12_800, False) in res.probes    # doubled first
    assert all(ok == (f <= boundary) for f, ok in res.probes)

    capped = bench.largest_fitting_length(fits=lambda f: True, start_frames=100, max_frames=1000)
    assert capped.frames == 1000 and capped.bound == "max_frames"
    none = bench.largest_fitting_length(fits=lambda f: False, start_frames=100)
    assert none.frames is None and none.length_s is None
    with pytest.raises(ValueError):
        bench.largest_fitting_length()


def test_time_step_slow_first_call_does_not_cut_repeats():
    calls = []

    def step():          # first call "compiles" (0.3 s), later calls take 5 ms
        time.sleep(0.3 if not calls else 0.005)
        calls.append(1)
    timing = bench.time_step(step, "cpu", warmup=2, repeats=5, max_seconds=0.2)
    assert len(timing.times_ms) == 5 and timing.median_ms < 100


def test_predicted_call_time_is_linear_from_one_point_and_measured_from_two():
    from dasslib.bench import predict_call_s
    assert predict_call_s([], 1000) is None
    assert predict_call_s([(100, 0.033)], 1000) == pytest.approx(0.33)          # slope 1 from one point
    assert predict_call_s([(100, 0.01), (200, 0.04)], 400) == pytest.approx(0.16)  # measured slope 2
    assert predict_call_s([(100, 0.03), (1000, 0.031)], 10_000) == pytest.approx(0.31)  # clipped to 1
    assert predict_call_s([(100, 0.01), (200, 0.08)], 400) == pytest.approx(0.32)  # clipped to 2


def test_largest_fitting_length_from_known_bounds():
    boundary, seen = 12_345, []

    def fits(f):
        seen.append(f)
        return f <= boundary
    res = bench.largest_fitting_length(fits=fits, known_fit=9_000, known_fail=18_000, abs_tol_frames=10,
                                       rel_tol=0.0)
    assert res.frames <= boundary < res.frames + 10 and res.bound == "memory"
    assert min(seen) > 9_000 and max(seen) < 18_000                     # bisection only
    seen.clear()
    up = bench.largest_fitting_length(fits=fits, known_fit=6_400, abs_tol_frames=10, rel_tol=0.0)
    assert up.frames <= boundary < up.frames + 10 and seen[0] == 12_800  # doubling from the known fit
    capped = bench.largest_fitting_length(fits=lambda f: 1 / 0, known_fit=1000, max_frames=1000)
    assert capped.frames == 1000 and capped.bound == "max_frames" and capped.probes == ()
    start_only = bench.largest_fitting_length(fits=lambda f: f <= 50, start_frames=100, known_fail=400)
    assert start_only.frames is None and start_only.probes == ((100, False),)
    with pytest.raises(ValueError, match="known_fit"):
        bench.largest_fitting_length(fits=fits, known_fit=500, known_fail=400)


def test_largest_fitting_length_of_a_model_spec():
    res = bench.largest_fitting_length(spec(OOMToy, "oomy"), "train", device="cpu", start_frames=4,
                                       abs_tol_frames=1, rel_tol=0.0)
    assert res.frames == OOMToy.limit and res.bound == "memory"
    table = bench.capacity_table([spec(OOMToy, "oomy")], device="cpu", progress=False,
                                 start_frames=4, abs_tol_frames=1, rel_tol=0.0)
    assert table["max_frames"].tolist() == [OOMToy.limit] * 2 and table["mode"].tolist() == list(bench.MODES)


def synthetic(lengths=(1, 2, 4, 8, 16), ssm_oom_from=None, ast_oom_from=8):
    """AST time 0.5 L^2 ms (OOM from ast_oom_from s), SSM time 1.5 L ms: ratio 3 / L,
    crossover at exactly 3 s."""
    rows = []
    for model, f, oom_from in (("ast_base_sdpa", lambda L: 0.5 * L**2, ast_oom_from),
                               ("ssm", lambda L: 1.5 * L, ssm_oom_from)):
        for L in lengths:
            status = "oom" if oom_from is not None and L >= oom_from else "ok"
            ms = f(L) if status == "ok" else math.nan
            rows.append(dict(model=model, mode="inference", batch=1, length_s=float(L), status=status,
                             median_ms=ms, throughput_audio_s_per_s=L / (ms / 1e3), peak_mem_mb=ms * 10))
    return pd.DataFrame(rows)


def test_crossover_length_matches_analytic_value():
    df = synthetic(ast_oom_from=None)
    assert bench.crossover_length(df, "ssm", "ast_base_sdpa") == pytest.approx(3.0, rel=1e-9)
    assert bench.crossover_length(df, "ssm", "ast_base_sdpa",
                                  metric="throughput_audio_s_per_s") == pytest.approx(3.0, rel=1e-9)
    assert bench.crossover_length(df, "ast_base_sdpa", "ssm") is None        # never becomes faster
    assert bench.crossover_length(synthetic(lengths=(4, 8)), "ssm", "ast_base_sdpa") is None  # faster throughout
    with pytest.raises(ValueError, match="no rows"):
        bench.crossover_length(df, "nope", "ast_base_sdpa")


def test_ratio_table_and_win_summary():
    df = synthetic()
    table = bench.ratio_table(df, at_length_s=4).set_index("model")
    assert table.loc["ssm", "ratio"] == pytest.approx((0.5 * 16) / (1.5 * 4))   # throughput ratio
    assert table.loc["ast_base_sdpa", "ratio"] == pytest.approx(1.0)
    between = bench.ratio_table(df, at_length_s=3, metric="median_ms").set_index("model")
    assert between.loc["ssm", "ratio"] == pytest.approx(1.0)                   # log-log exact for power laws
    assert math.isnan(bench.ratio_table(df, at_length_s=16).set_index("model").loc["ssm", "ratio"])  # AST OOM

    summary = bench.win_summary(df).set_index("model")
    assert summary.loc["ssm", "crossover_length_s"] == pytest.approx(3.0)
    assert summary.loc["ssm", "baseline_max_ok_s"] == 4 and summary.loc["ssm", "max_ok_s"] == 16
    assert "from 3 s" in summary.loc["ssm", "verdict"] and "oom beyond" in summary.loc["ssm", "verdict"]


def test_plot_scaling_lines_and_oom_markers():
    df = synthetic()
    train = df.assign(mode="train", median_ms=df["median_ms"] * 3)
    both = pd.concat([df, train], ignore_index=True)
    fig = bench.plot_scaling(both, metric="median_ms")
    ax = fig.axes[0]
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(ax.lines) == 4 and ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(ax.collections) == 2                       # one OOM cross per AST series
    assert "out of memory" in [t.get_text() for t in ax.get_legend().texts]
    fig_inf = bench.plot_scaling(both, metric="peak_mem_mb", mode="inference")
    assert len(fig_inf.axes[0].lines) == 2
    with pytest.raises(ValueError):
        bench.plot_scaling(both, metric="nope")
    matplotlib.pyplot.close("all")


def test_model_spec_from_registry_name_is_lazy():
    s = bench.model_spec("ast_base", attn="sdpa")
    assert s.label == "ast_base_sdpa" and s.mel_bins == 128
    assert bench.model_spec("ssam_tiny").mel_bins == 80
    labels = [x.label for x in bench.default_specs(["ast_small", "dass_small"])]
    assert labels == ["ast_small_eager", "ast_small_sdpa", "dass_small"]
    with pytest.raises(ValueError):
        bench.model_spec(lambda: ConvToy())
    with pytest.raises(TypeError):
        bench.model_spec(3)
    with pytest.raises(ValueError):
        sweep([spec(ConvToy, "conv")], [0.1], modes="eval")


def test_limit_memory_rejects_bad_values_and_the_cpu():
    assert bench.limit_memory("cpu", None) is None and bench.memory_limit_gib("cpu") is None
    with pytest.raises(ValueError, match="needs a CUDA device"):
        bench.limit_memory("cpu", 10)
    for bad in (0, -1, float("nan"), True, "80"):
        with pytest.raises(ValueError, match="positive number of GiB"):
            bench.limit_memory("cpu", bad)


def test_limit_memory_sets_the_allocator_fraction_and_names_it(monkeypatch):
    """The CUDA path with torch.cuda's calls faked: 78.5 GiB of a 140 GiB card is a fraction
    78.5 / 140 of device 0; the sweep/capacity device label says so; None lifts the cap."""
    from types import SimpleNamespace
    calls = []
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda d: SimpleNamespace(total_memory=140 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d: calls.append((f, d)))
    dev = torch.device("cuda")
    with pytest.raises(ValueError, match="exceeds the 140.0 GiB of Fake GPU"):
        bench.limit_memory(dev, 141)
    assert bench.limit_memory(dev, 78.5) == 78.5
    assert calls == [(78.5 / 140, 0)] and bench.memory_limit_gib(dev) == 78.5
    from dasslib.bench.sweep import device_name
    assert device_name(dev) == "Fake GPU, limited to 78.5 GiB"
    assert bench.limit_memory(dev, None) is None
    assert calls[-1] == (1.0, 0) and bench.memory_limit_gib(dev) is None
    assert device_name(dev) == "Fake GPU"


def test_back_to_back_ms_calls_the_step_that_often_and_refuses_no_calls():
    from dasslib.bench.timing import back_to_back_ms

    calls = []
    ms = back_to_back_ms(lambda: calls.append(1), "cpu", calls=7)
    assert len(calls) == 7 and ms >= 0
    with pytest.raises(ValueError, match="calls >= 1"):
        back_to_back_ms(lambda: None, "cpu", calls=0)
