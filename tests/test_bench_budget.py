"""Wall-time budgets of the efficiency study on CPU, with toy models that advance a fake clock:
the sweep gives every model both modes (shares per mode, rollover, breadth-first order) and
records what each point cost (wall_s); capacity searches re-time a slow first probe before
stopping for time, stop on their budget with what they know, and a budgeted capacity table
reaches every (model, mode)."""
import math
import time

import pandas as pd
import pytest
import torch
from torch import nn

from dasslib import bench
from dasslib.experiments import efficiency as E

F_BINS = 8


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class ClockToy(nn.Module):
    """Temporal conv; each forward advances ``clock`` by ``cost[mode] + per_frame * T`` seconds and
    runs out of memory (CUDA's error) for T > ``limit``."""

    def __init__(self, clock, cost=None, per_frame=0.0, limit=None):
        super().__init__()
        self.clock, self.cost, self.per_frame, self.limit = clock, cost or {}, per_frame, limit
        self.conv, self.head = nn.Conv1d(F_BINS, 4, 3, padding=1), nn.Linear(4, 3)

    def num_tokens(self, frames, mel_bins):
        return frames

    def forward(self, x):
        T = x.shape[1]
        if self.clock is not None:
            self.clock.advance(self.cost.get("train" if self.training else "inference", 0.0) + self.per_frame * T)
        if self.limit is not None and T > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (toy, T={T})")
        return self.head(self.conv(x.transpose(1, 2)).mean(-1))


def toy_spec(label, clock, builds=None, **kw):
    def factory():
        if builds is not None and torch.empty(0).device.type != "meta":
            builds.append(label)
        return ClockToy(clock, **kw)
    return bench.model_spec(factory, label=label, mel_bins=F_BINS)


def run(specs, lengths, clock, **kw):
    kw = {**dict(device="cpu", warmup=0, repeats=1, progress=False, clock=clock), **kw}
    return bench.run_sweep(specs, lengths, **kw)


def statuses(df, mode):
    return df[df["mode"] == mode].pivot(index="model", columns="length_s", values="status")


# --- sweep ---------------------------------------------------------------------------------------

def test_shared_budget_gives_every_model_both_modes_breadth_first():
    clock, builds = FakeClock(), []
    specs = [toy_spec(n, clock, builds, cost={"inference": 1.0, "train": 1.0}) for n in "abc"]
    df = run(specs, [0.1, 0.2, 0.3], clock, budget_s=8.0)
    assert list(df.columns) == bench.COLUMNS
    for mode in bench.MODES:                       # 4 s each: the 1st length of all three, then a's 2nd
        st = statuses(df, mode)
        assert (st[0.1] == "ok").all(), st
        assert st.loc["a", 0.2] == "ok" and st.loc["b", 0.2] == st.loc["c", 0.2] == "skipped"
        assert (st[0.3] == "skipped").all()
    skipped = df[df["status"] == "skipped"]
    assert skipped["note"].str.startswith(bench.BUDGET_NOTE).all()
    assert set(skipped["note"]) == {f"study time budget: the {m} allotment of 4 s is spent" for m in bench.MODES}
    ok = df[df["status"] == "ok"]
    assert (ok["wall_s"] == 1.0).all() and (skipped["wall_s"] == 0).all()   # one fake second per call
    assert df["wall_s"].sum() == clock.now == 8.0
    assert sorted(builds) == ["a", "b", "c"]       # breadth-first, yet each model built once
    # rows in the order mode, model, length whatever the run order
    assert df["model"].tolist()[:3] == ["a"] * 3 and df["mode"].tolist()[:9] == ["inference"] * 9

    clock.now = 0.0                                # depth-first: the first models take the inference share
    depth = run(specs, [0.1, 0.2, 0.3], clock, budget_s=8.0, order="depth")
    st = statuses(depth, "inference")
    assert (st.loc["a"] == "ok").all() and st.loc["b", 0.1] == "ok" and (st.loc["c"] == "skipped").all()
    assert (depth["tokens"] == depth["frames"]).all()   # also for c, never built: counted on a meta model


def test_unused_time_of_a_mode_rolls_over():
    clock = FakeClock()
    specs = [toy_spec(n, clock, cost={"inference": 0.5, "train": 1.5}) for n in "ab"]
    n_ok = lambda df, mode: int(((df["mode"] == mode) & (df["status"] == "ok")).sum())  # noqa: E731
    shared = run(specs, [0.1, 0.2, 0.3], clock, budget_s=10.0)
    # inference: 6 points x 0.5 s = 3 s of its 5 s share; train gets 10 - 3 = 7 s: 5 points of 1.5 s
    assert n_ok(shared, "inference") == 6 and n_ok(shared, "train") == 5
    assert "the train allotment of 7 s is spent" in shared.loc[shared["status"] == "skipped", "note"].iloc[0]
    assert clock.now == 3.0 + 7.5

    clock.now = 0.0
    per_mode = run(specs, [0.1, 0.2, 0.3], clock, budget_s={"inference": 5.0, "train": 5.0})
    assert n_ok(per_mode, "train") == 5            # 5 s + the 2 s inference did not use
    clock.now = 0.0
    tight = run(specs, [0.1, 0.2, 0.3], clock, budget_s={"inference": 1.0, "train": 5.0})
    assert n_ok(tight, "inference") == 2 and n_ok(tight, "train") == 4   # nothing to roll over
    assert statuses(tight, "inference").loc[:, 0.1].eq("ok").all()       # both models, shortest length
    for bad in ({"inference": 1.0}, {"inference": 1.0, "train": -1.0}, -3.0, "10", True):
        with pytest.raises(ValueError, match="budget_s"):
            run(specs, [0.1], clock, budget_s=bad)


@pytest.fixture
def one_thread():
    """One intra-op thread: on a loaded 2-core machine the toy's tiny conv otherwise waits on
    thread hand-offs (16 ms calls were seen), which this real-time test reads as its cost."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_point_predicted_past_the_allotment_is_skipped_but_a_cheaper_one_runs(one_thread):
    class SleepToy(ClockToy):
        def forward(self, x):
            time.sleep(1e-3 * x.shape[1])          # 1 ms per frame, real time
            return super().forward(x)
    specs = [bench.model_spec(lambda: SleepToy(None), label="sleepy", mel_bins=F_BINS),
             bench.model_spec(lambda: ClockToy(None), label="quick", mel_bins=F_BINS)]
    df = bench.run_sweep(specs, [0.1, 5.0], "inference", device="cpu", warmup=0, repeats=3, progress=False,
                         budget_s=1.0)
    st = df.set_index(["model", "length_s"])
    assert st.loc[("sleepy", 0.1), "status"] == "ok" and st.loc[("quick", 5.0), "status"] == "ok", df["note"]
    assert st.loc[("sleepy", 5.0), "status"] == "skipped"   # 3 calls of ~0.5 s > what is left of 1 s
    assert st.loc[("sleepy", 5.0), "note"].startswith("study time budget: predicted")
    assert st.loc[("sleepy", 0.1), "wall_s"] >= 3 * 0.01     # wall_s covers the three timed calls


def test_wall_s_includes_warmup_and_one_time_costs():
    clock = FakeClock()

    class CompileToy(ClockToy):                    # first call per input length: +5 s ("compilation")
        seen = set()

        def forward(self, x):
            if x.shape[1] not in self.seen:
                self.seen.add(x.shape[1])
                self.clock.advance(5.0)
            return super().forward(x)
    spec = bench.model_spec(lambda: CompileToy(clock, cost={"inference": 0.1}), label="c", mel_bins=F_BINS)
    df = run([spec], [0.1, 0.2], clock, modes="inference", warmup=2, repeats=3)
    assert df["wall_s"].tolist() == pytest.approx([5.0 + 5 * 0.1] * 2)
    assert (df["median_ms"] < 1000).all()          # the timed calls themselves are real and quick


def test_model_pool_builds_once_seeded_and_keeps_one_model_resident():
    builds = []
    a, b = toy_spec("a", None, builds), toy_spec("b", None, builds)
    with bench.ModelPool("cpu", seed=3) as pool:
        ma = pool.get(a)
        assert pool.get(b) is not ma and pool.get(a) is ma and pool.builds == 2 and builds == ["a", "b"]
        assert pool.built(b) is not None
    with bench.ModelPool("cpu", seed=3) as pool:    # other order, same seed: same weights
        pool.get(b)
        assert torch.equal(pool.get(a).head.weight, ma.head.weight)
    with pytest.raises(ValueError, match="unique"):
        run([a, a], [0.1], None)


# --- capacity search -----------------------------------------------------------------------------

def compiling_fits(clock, boundary, per_frame, compile_s, seen=None):
    """fits(frames): frames <= boundary; the first call at each length costs compile_s more."""
    seen = set() if seen is None else seen

    def fits(frames):
        clock.advance(per_frame * frames + (0.0 if frames in seen else compile_s))
        seen.add(frames)
        return frames <= boundary
    return fits


def test_slow_first_probe_is_retimed_before_stopping_for_time():
    # The H100 run's `aum_base train: 2 s, bound time`: every new length compiles Triton kernels
    # (seconds), so a single call looked slower than max_seconds_per_probe at 2 s of audio.
    clock = FakeClock()
    res = bench.largest_fitting_length(fits=compiling_fits(clock, 50_000, 1e-5, 10.0), start_frames=100,
                                       max_seconds_per_probe=8.0, rel_tol=0.02, clock=clock)
    assert res.bound == "memory" and 0.98 * 50_000 <= res.frames <= 50_000
    doubling = [100 * 2**k for k in range(9)]      # 100 ... 25_600 fit, 51_200 does not
    tried = [f for f, _ in res.probes]
    assert all(tried.count(f) == 2 for f in doubling)                     # each re-timed once
    assert "9 probe(s) re-timed" in res.note
    assert res.probe_s == pytest.approx(sum(res.seconds)) == pytest.approx(clock.now)
    assert len(res.seconds) == len(res.probes)


def test_really_slow_steps_stop_the_doubling_without_retiming():
    clock = FakeClock()
    res = bench.largest_fitting_length(fits=compiling_fits(clock, 10**9, 1e-3, 0.0), start_frames=100,
                                       max_seconds_per_probe=8.0, clock=clock)
    # 6400 frames take 6.4 s; 12_800 are predicted at 12.8 s > 8 s: stop there, no probe repeated
    assert res.bound == "time" and res.frames == 6400 and len(set(res.probes)) == len(res.probes)
    assert "12.8 s > 8 s per probe" in res.note and "re-timed" not in res.note
    # warm times known from a sweep at the same batch: no probe at all
    none = bench.largest_fitting_length(fits=compiling_fits(clock, 10**9, 1e-3, 0.0), known_fit=6400,
                                        known_times=[(3200, 3.2), (6400, 6.4)], max_seconds_per_probe=8.0,
                                        clock=clock)
    assert none.bound == "time" and none.frames == 6400 and none.probes == ()


def test_search_budget_stops_with_the_longest_known_fit():
    clock = FakeClock()
    res = bench.largest_fitting_length(fits=compiling_fits(clock, 50_000, 0.0, 1.0), start_frames=100,
                                       budget_s=4.5, clock=clock)
    # probes of 1 s at 100, 200, 400 (each predicted 2 s from the ones before, slope >= 1); the
    # next is predicted 2 s > 1.5 s left
    assert res.bound == "budget" and res.frames == 400 and [f for f, _ in res.probes] == [100, 200, 400]
    assert "the probe at 8 s is predicted 2 s > 1.5 s left" in res.note
    spent = bench.largest_fitting_length(fits=lambda f: True, known_fit=1000, budget_s=0.0)
    assert spent.bound == "budget" and spent.frames == 1000 and spent.probes == ()


def test_capacity_table_records_probe_and_search_time():
    clock = FakeClock()
    table = bench.capacity_table([toy_spec("t", clock, per_frame=1e-3, limit=300)], device="cpu", progress=False,
                                 start_frames=100, abs_tol_frames=10, rel_tol=0.0, clock=clock)
    assert list(table.columns) == bench.CAPACITY_COLUMNS and table["max_frames"].between(290, 300).all()
    # 100, 200 fit, 400 fails, then bisection: each probe costs frames ms on the fake clock
    assert (table["probe_s"] > 0.7).all() and table["wall_s"].sum() == pytest.approx(clock.now)
    assert (table["probe_s"] <= table["wall_s"]).all() and (table["note"] == "").all()


def test_capacity_table_known_bounds_order_and_checks():
    clock, builds = FakeClock(), []
    specs = [toy_spec("slow", clock, builds, per_frame=1e-2, limit=400),
             toy_spec("capped", clock, builds, per_frame=1e-3, limit=10**6)]
    known = {"slow": bench.Known(fit=200, times=((100, 1.0), (200, 2.0))),
             "capped": bench.Known(fit=1000, times=((1000, 1.0),))}
    table = bench.capacity_table(specs, "inference", device="cpu", progress=False, known=lambda m, _: known[m],
                                 order="cheapest", max_frames=1000, abs_tol_frames=10, rel_tol=0.0, clock=clock)
    assert table["model"].tolist() == ["slow", "capped"]                 # rows in spec order
    c = table.set_index("model")
    assert c.loc["capped", "bound"] == "max_frames" and c.loc["capped", "probes"] == 0
    assert builds == ["slow"]                                            # the capped model is never built
    assert c.loc["slow", "bound"] == "memory" and 390 <= c.loc["slow", "max_frames"] <= 400
    with pytest.raises(ValueError, match="order must be one of"):
        bench.capacity_table(specs, order="fastest", device="cpu")
    with pytest.raises(ValueError, match="budget_s"):
        bench.capacity_table(specs, budget_s=-1.0, device="cpu")


def test_budgeted_capacity_reaches_every_search_cheapest_first():
    clock, builds = FakeClock(), []
    specs = [toy_spec("done", clock, builds, per_frame=1e-3, limit=400),
             toy_spec("gap", clock, builds, per_frame=1e-3, limit=400),
             toy_spec("unknown", clock, builds, per_frame=1e-3, limit=400)]
    sweep = pd.DataFrame([
        dict(model="done", mode=m, batch=1, frames=500, status="ok", median_ms=500.0) for m in bench.MODES] + [
        dict(model="gap", mode=m, batch=1, frames=f, status=s, median_ms=ms) for m in bench.MODES
        for f, s, ms in ((100, "ok", 100.0), (200, "ok", 200.0), (800, "oom", math.nan))])
    caps = E.budgeted_capacity(specs, batch=1, budget_s=20.0, max_length_s=5.0, sweep=sweep, device="cpu",
                               frames_per_s=100, abs_tol_frames=10, rel_tol=0.0, clock=clock)
    assert list(caps.columns) == bench.CAPACITY_COLUMNS
    assert caps["model"].tolist() == ["done", "done", "gap", "gap", "unknown", "unknown"]   # spec order
    c = caps.set_index(["model", "mode"])
    assert (c.loc["done", "bound"] == "max_frames").all() and (c.loc["done", "probes"] == 0).all()
    assert "done" not in builds                    # no probe needed: the model is never built
    assert (c.loc["gap", "bound"] == "memory").all() and c.loc["gap", "max_frames"].between(390, 400).all()
    # 'unknown' (no sweep times) went last and still got searches with the rolled-over time
    assert (c.loc["unknown", "probes"] >= 1).all() and c.loc["unknown", "max_frames"].notna().all()
    assert (c["probe_s"] <= c["wall_s"] + 1e-12).all() and c["wall_s"].sum() == pytest.approx(clock.now)
    assert builds.count("gap") == builds.count("unknown") == 1
    # given order with a tiny budget: every search still starts, the late ones cut by 'budget'
    clock.now, builds[:] = 0.0, []
    tight = E.budgeted_capacity(specs[1:], batch=1, budget_s=0.9, max_length_s=5.0, device="cpu",
                                frames_per_s=100, order="given", clock=clock)
    assert (tight["probes"] >= 1).all() and set(tight["bound"]) == {"budget"}
    assert tight["note"].str.contains(r"search \d of 4, share").all()


def test_time_summary_and_by_model():
    clock = FakeClock()
    specs = [toy_spec(n, clock, cost={"inference": 1.0, "train": 2.0}) for n in "ab"]
    df = run(specs, [0.1, 0.2], clock, budget_s=6.0)
    caps = pd.DataFrame([dict(model="a", mode="inference", probes=3, probe_s=1.5, wall_s=2.0, bound="memory"),
                         dict(model="b", mode="inference", probes=0, probe_s=0.0, wall_s=0.0, bound="budget")])
    s = E.time_summary(df, caps).set_index(["stage", "mode"])
    assert s.loc[("sweep", "inference"), "wall_s"] == 3.0 and s.loc[("sweep", "inference"), "runs"] == 3
    assert s.loc[("sweep", "train"), "wall_s"] == 4.0 and s.loc[("sweep", "train"), "skipped"] == 2
    assert s.loc[("capacity", "inference"), "other_s"] == pytest.approx(0.5)
    assert s.loc[("capacity", "inference"), "skipped"] == 1 and s.loc[("sweep", "train"), "costliest"] == "a"
    by = E.time_by_model(df, caps)
    assert by.index.tolist() == ["a", "b"] and by.loc["a", "total"] == pytest.approx(2.0 + 2.0 + 2.0)
    assert list(by.columns) == ["sweep inference", "sweep train", "capacity inference", "total"]
