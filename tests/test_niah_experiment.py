"""dasslib.experiments.niah: the NIAH scores (niah_map, sweep) against haystacks built here one by one and
an average precision written out in float64, the length-scaling table, the "What this run shows" text of
hand-made results, the figures and the needles of an eval set."""
import math
import re
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from dasslib.data.niah import build_haystack  # noqa: E402
from dasslib.experiments import common, niah  # noqa: E402

C, F = 3, 8
STATS = (-2.0, 3.0)  # not the AudioSet defaults: a haystack normalized with those would differ
LABELS = [[1, 0, 1], [1, 1, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]]


class Recorder(nn.Module):
    """(B, T, F) -> (B, C): a fixed projection of the time-mean of the input; keeps every input it sees."""

    def __init__(self, seed=1, limit=None):
        super().__init__()
        self.proj = nn.Parameter(torch.randn(F, C, generator=torch.Generator().manual_seed(seed)))
        self.limit, self.seen = limit, []

    def forward(self, x):
        if self.limit is not None and x.shape[1] > self.limit:  # as the CPU allocator fails
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                               "memory: you tried to allocate 85899345920 bytes. Error code 12")
        self.seen.append(x.detach().clone())
        return x.mean(dim=1) @ self.proj


def make_needles():
    """5 needles of 100 frames (1 s of audio), each class with positives and negatives."""
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(100, F, generator=g), 0.1 * torch.randn(16000, generator=g),
             torch.tensor(lab, dtype=torch.float32)) for lab in LABELS]


def average_precision(scores, positive):
    """Mean of the precision at each positive, down the ranking (no ties in these scores)."""
    hits = positive[np.argsort(-scores, kind="stable")].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def reference(model, needles, length_s, position=0.5, kind="zeros", snr=None, seed=0, babble=None):
    """(inputs, mAP): needle i in its own haystack (noise seed (seed, i)), scored in float64."""
    xs = torch.stack([build_haystack(f, w, length_s, position, kind, snr, seed=(seed, i), mean=STATS[0],
                                     std=STATS[1], babble_wav=babble)[0] for i, (f, w, _) in enumerate(needles)])
    scores = (xs.double().mean(dim=1) @ model.proj.detach().double()).numpy()
    targets = torch.stack([lab for _, _, lab in needles]).numpy() > 0
    return xs, float(np.mean([average_precision(scores[:, c], targets[:, c]) for c in range(C)]))


def test_niah_map_scores_every_needle_in_its_own_haystack():
    needles, model = make_needles(), Recorder()
    got = niah.niah_map(model, needles, STATS, 3.0, position=0.25, kind="white", snr_db=5.0, device=None, seed=4,
                        batch_size=2)
    xs, expected = reference(model, needles, 3.0, 0.25, "white", 5.0, seed=4)
    assert [len(x) for x in model.seen] == [2, 2, 1]  # batches of batch_size, in order
    assert torch.equal(torch.cat(model.seen), xs)
    assert got == pytest.approx(expected, rel=1e-6)
    assert 0.3 < got < 0.99  # the haystack moves the ranking: not a trivial mAP

    loop = 0.2 * torch.sin(torch.arange(48000) * 0.05)  # a babble loop of our own
    model.seen.clear()
    got = niah.niah_map(model, needles, STATS, 2.5, position=0.75, kind="babble", snr_db=0.0, device="cpu",
                        babble_wav=loop, fast="off")
    xs, expected = reference(model, needles, 2.5, 0.75, "babble", 0.0, babble=loop)
    assert torch.equal(torch.cat(model.seen), xs) and got == pytest.approx(expected, rel=1e-6)


def test_niah_map_feeds_haystacks_over_60_s_one_at_a_time():
    needles, model = make_needles(), Recorder()
    niah.niah_map(model, needles, STATS, 60.0, batch_size=4)
    assert [x.shape for x in model.seen] == [(4, 6000, F), (1, 6000, F)]
    model.seen.clear()
    niah.niah_map(model, needles, STATS, 60.01, batch_size=4)
    assert [x.shape for x in model.seen] == [(1, 6001, F)] * 5
    model.seen.clear()
    niah.niah_map(model, needles * 2, STATS, 2.0)
    assert [len(x) for x in model.seen] == [8, 2]  # batches of 8 by default


def test_sweep_rows_against_haystacks_scored_here(capsys):
    needles, model = make_needles(), Recorder()
    loop = 0.2 * torch.sin(torch.arange(48000) * 0.03)
    kinds = (("zeros", None), ("white", 0.0), ("babble", 5.0))
    table = niah.sweep({"m": model}, needles, STATS, [3.0, 4.0], positions=(0.25, 1.0), kinds=kinds, seed=2,
                       batch_size=3, babble_wav=loop, progress=False, fast="off")
    assert capsys.readouterr().err == ""
    assert model.seen[0].shape == (3, 1024, F)  # the needle alone: 1024 frames, 10.24 s
    xs, base = reference(model, needles, 10.24)
    inputs, rows = [xs], []
    for length in (3.0, 4.0):
        for position in (0.25, 1.0):
            for kind, snr in kinds:
                xs, m = reference(model, needles, length, position, kind, snr, seed=2, babble=loop)
                inputs.append(xs)
                rows.append(dict(model="m", length_s=length, position=position, haystack=kind, snr_db=snr, mAP=m,
                                 mAP_10s=base, rel_drop=1.0 - m / base))
    seen = [torch.cat(model.seen[i:i + 2]) for i in range(0, len(model.seen), 2)]  # 2 batches (3 + 2) a call
    assert len(seen) == len(inputs) and all(torch.equal(a, b) for a, b in zip(seen, inputs))
    pd.testing.assert_frame_equal(table, pd.DataFrame(rows), rtol=1e-6)
    assert (table.loc[table["haystack"] == "white", "rel_drop"].abs() > 0.05).all()  # white noise moves the ranks


def test_sweep_leaves_out_a_length_that_does_not_fit_once_per_model():
    needles = make_needles()
    hungry, fine = Recorder(limit=1400), Recorder(seed=2)
    with pytest.warns(UserWarning, match="NIAH sweep") as record:  # every warning, repeated ones too
        table = niah.sweep({"hungry": hungry, "fine": fine}, needles, STATS, [12.0, 15.0, 20.0],
                           positions=(0.0, 0.5), progress=False, fast="off")
    messages = [str(w.message) for w in record if "NIAH sweep" in str(w.message)]
    assert len(messages) == 1
    assert messages[0].startswith("NIAH sweep: hungry left out at 15 s and longer: an input of 1500 frames (15.0 s) "
                                  "does not fit in memory on cpu")
    assert list(zip(table["model"], table["length_s"], table["position"])) == [
        ("hungry", 12.0, 0.0), ("hungry", 12.0, 0.5)] + [("fine", n, p) for n in (12.0, 15.0, 20.0) for p in (0.0, 0.5)]


def test_sweep_defaults_and_progress_bar(capsys, monkeypatch):
    needles, model = make_needles() * 2, Recorder()  # 10 needles
    monkeypatch.delenv("DASSLIB_WIDGETS", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    table = niah.sweep({"m": model}, needles, STATS, [2.0], kinds=(("white", 0.0),))  # progress None: no bar
    assert "NIAH" not in capsys.readouterr().err
    assert [len(x) for x in model.seen] == [8, 2, 8, 2]  # batches of 8, the needle alone then the 2 s haystack
    assert table["mAP"].tolist() == pytest.approx([reference(model, needles, 2.0, 0.5, "white", 0.0, seed=0)[1]])
    needles = needles[:2]
    niah.sweep({"m": Recorder()}, needles, STATS, [2.0], progress=True, fast="off")
    bar = capsys.readouterr().err
    assert re.search(r"(^|\r)NIAH: ", bar) and "\n" not in bar  # the bar is cleared at the end (leave=False)
    monkeypatch.setenv("DASSLIB_WIDGETS", "1")  # as in a live notebook
    niah.sweep({"m": Recorder()}, needles, STATS, [2.0], fast="off")
    assert re.search(r"(^|\r)NIAH: ", capsys.readouterr().err)


def test_length_scaling_rows(monkeypatch):
    import dasslib.inference as inference

    calls, errors = [], []

    class Fit:
        max_seconds = 1.8

        def __str__(self):
            return "the largest that fits: 180 frames"

    def measure(model, frames, device=None, **kw):
        calls.append((model.name, frames, device, kw))
        if frames > model.limit:
            errors.append(inference.InputTooLongError(frames, model.fit, device="cpu"))
            raise errors[-1]
        return {"seconds": frames / 1000, "peak_mem_bytes": model.peak}

    monkeypatch.setattr(inference, "measure", measure)
    models = {"a": SimpleNamespace(name="a", limit=200, fit=Fit(), peak=3 * 2 ** 29),
              "b": SimpleNamespace(name="b", limit=100, fit=None, peak=None)}
    table = niah.length_scaling(models, [1.5, 2.25])
    defaults = dict(num_mel_bins=128, dtype=torch.bfloat16, warmup=1, repeats=2, fast="off", lean="auto")
    assert calls == [("a", 150, None, defaults), ("a", 225, None, defaults), ("b", 150, None, defaults),
                     ("b", 225, None, defaults)]
    assert table.columns.tolist() == ["model", "length_s", "frames", "fits", "seconds", "peak_mem_gib", "max_fit_s",
                                      "note"]
    assert table["model"].tolist() == ["a", "a", "b", "b"] and table["length_s"].tolist() == [1.5, 2.25, 1.5, 2.25]
    assert table["frames"].tolist() == [150, 225, 150, 225] and table["fits"].tolist() == [True, False, False, False]
    assert table.loc[0, "seconds"] == 0.15 and table.loc[0, "peak_mem_gib"] == 1.5 and table.loc[0, "note"] == ""
    assert table["max_fit_s"].isna().tolist() == [True, False, True, True] and table.loc[1, "max_fit_s"] == 1.8
    assert table["peak_mem_gib"].isna().tolist() == [False, True, True, True]
    assert table["seconds"].isna().tolist() == [False, True, True, True]
    assert table["note"].tolist()[1:] == [str(e) for e in errors]
    assert "; the largest that fits: 180 frames" in table.loc[1, "note"]
    calls.clear()
    table = niah.length_scaling({"b": models["b"]}, [0.5], device="cpu", dtype=torch.float16, repeats=5,
                                num_mel_bins=64, fast="compile", lean=False)
    assert calls == [("b", 50, "cpu", dict(num_mel_bins=64, dtype=torch.float16, warmup=1, repeats=5,
                                           fast="compile", lean=False))]
    assert table.loc[0, "fits"] and table.loc[0, "peak_mem_gib"] is None and table.loc[0, "seconds"] == 0.05
    table = niah.length_scaling({"b": models["b"]}, [2.0])  # a first row that does not fit: the same columns
    assert table.columns.tolist() == ["model", "length_s", "frames", "fits", "seconds", "peak_mem_gib", "max_fit_s",
                                      "note"]


def results():
    """Hand-made results of a 04 run (rows deliberately out of order)."""
    fig4 = pd.DataFrame([("D", 300.0, 0.525, 0.5, -0.05), ("D", 30.0, 0.48, 0.5, 0.04),
                         ("A", 30.0, 0.36, 0.4, 0.1), ("A", 3000.0, 0.44, 0.4, -0.1), ("A", 300.0, 0.4, 0.4, 0.0)],
                        columns=["model", "length_s", "mAP", "mAP_10s", "rel_drop"])
    fig3 = pd.DataFrame([("D", 0.0, 0.1), ("D", 0.5, 0.3), ("D", 1.0, 0.2), ("A", 0.0, -0.05), ("A", 0.5, 0.0),
                         ("A", 1.0, 0.25)], columns=["model", "position", "rel_drop"]).assign(length_s=50.0)
    fig5 = pd.DataFrame([("white", 10.0, 0.4), ("white", -5.0, 0.1), ("white", 0.0, 0.2), ("babble", 20.0, 0.45),
                         ("babble", 0.0, 0.3)], columns=["haystack", "snr_db", "mAP"]).assign(mAP_10s=0.5,
                                                                                               length_s=300.0)
    fig6 = pd.DataFrame([(600.0, 0.5, 0.5, 0.0), (60.0, 0.45, 0.5, 0.1)],
                        columns=["length_s", "mAP", "mAP_10s", "rel_drop"])
    scaling = pd.DataFrame([("D", 60.0, True, 0.5, 1.25), ("D", 600.0, True, 2.0, None),
                            ("D", 6000.0, False, None, None), ("A", 600.0, False, None, None),
                            ("A", 60.0, True, 0.25, 0.5), ("A", 6000.0, False, None, None),
                            ("X", 60.0, False, None, None)],
                           columns=["model", "length_s", "fits", "seconds", "peak_mem_gib"])
    return dict(fig3=fig3, fig4=fig4, fig5=fig5, fig6=fig6, scaling=scaling)


def test_summary_of_hand_made_results():
    text = niah.summary(results(), "ci", "D")
    assert text.split("\n") == [
        "### What this run shows", "", common.profile_sentence("ci", "04_niah", niah.PROFILE_SCOPES), "",
        "**Fig. 4** (the paper: DASS loses little mAP as the zeros haystack grows to hours, and holds up better than "
        "AST). Here, D (needle in the middle): 0.500 alone, 0.480 at 30 s, 0.525 at 300 s (5% above the needle "
        "alone); A (needle first): 0.400 alone, 0.360 at 30 s, 0.440 at 3000 s (10% above the needle alone). At "
        "300 s, the longest length both ran, D gained 5% and A lost 0% of its needle-alone mAP: the SSM held up "
        "better, as in the paper.", "",
        "**Fig. 3** (the paper compares poolings over needle positions: a pooling that does not depend on where the "
        "needle is loses the same everywhere). Here, 50 s haystacks: D: relative drops from 10% to 30%, largest with "
        "the needle at 0.5; A: relative drops from -5% to 25%, largest with the needle at 1.", "",
        "**Fig. 5** (the paper scores white-noise and babble haystacks at several SNRs). Here, 300 s haystacks, "
        "needle alone 0.500: white 0.100 at -5 dB and 0.400 at 10 dB; babble 0.300 at 0 dB and 0.450 at 20 dB.", "",
        "**Fig. 6** (the paper: mAP against length in white noise at 0 dB). Here: 0.500 alone, 0.450 at 60 s, 0.500 "
        "at 600 s (0% below the needle alone).", "",
        "**Length scaling** (random weights, batch 1): D ran 600 s in 2.00 s; D did not fit 6000 s; A ran 60 s in "
        "0.25 s, 0.5 GiB peak; A did not fit 600 s; X did not fit 60 s."]


def test_summary_comparison_and_missing_parts():
    r = results()
    fig4 = r["fig4"].copy()
    fig4.loc[0, "rel_drop"] = 0.0  # D at 300 s as A: not better
    text = niah.summary({"fig4": fig4}, "gpu", "D")
    assert text.endswith("D lost 0% and A lost 0% of its needle-alone mAP: the SSM did not hold up better, unlike "
                         "the paper.")
    alone = niah.summary({"fig4": r["fig4"][r["fig4"]["model"] == "D"]}, "gpu", "D")
    assert alone.endswith("0.525 at 300 s (5% above the needle alone).")  # no other model: no comparison
    apart = fig4[(fig4["model"] == "D") | (fig4["length_s"] == 3000.0)]  # no length in common
    assert niah.summary({"fig4": apart}, "gpu", "D").endswith("0.440 at 3000 s (10% above the needle alone).")
    empty = {k: v.iloc[:0] for k, v in r.items()}
    assert niah.summary(empty, "paper", "D") == niah.summary({}, "paper", "D") == "\n".join([
        "### What this run shows", "", common.profile_sentence("paper", "04_niah", niah.PROFILE_SCOPES)])


@pytest.mark.parametrize("profile, first, last", [
    ("ci", "tiny DASS and AST models", "how length, position or noise affect a model."),
    ("gpu", "full-size DASS-Small and AST-Small", "far below the paper's AudioSet-trained models."),
    ("paper", "the paper's setting", "next to the paper's Figs. 3-6.")])
def test_profile_scopes(profile, first, last):
    scope = niah.PROFILE_SCOPES[profile]
    assert scope.startswith(first) and scope.endswith(last)


def test_figures_axes_and_lines():
    r = results()
    fig = niah.plot_fig3(r["fig3"], 50.0)
    ax = fig.axes[0]
    assert tuple(fig.get_size_inches()) == (6.4, 4.0) and ax.get_ylabel() == "relative mAP drop"
    assert ax.get_xlabel() == "position" and ax.get_title() == "NIAH, 50 s zeros haystack"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["D", "A"]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches if p.get_width() > 0)
    assert heights == [-0.05, 0.0, 0.1, 0.2, 0.25, 0.3]  # one bar per (model, position): its relative drop
    plt.close(fig)
    fig4 = r["fig4"].assign(series=r["fig4"]["model"])
    fig = niah.plot_fig4(fig4)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "input length (s)" and ax.get_ylabel() == "mAP"
    assert ax.get_title() == "NIAH, zeros haystack" and tuple(fig.get_size_inches()) == (6.4, 4.0)
    assert ax.lines[0].get_marker() == "o" and [t.get_text() for t in ax.get_legend().get_texts()] == ["D", "A"]
    plt.close(fig)
    fig = niah.plot_fig5(r["fig5"], 300.0, "D")
    ax = fig.axes[0]
    alone = [line for line in ax.lines if line.get_label() == "needle alone"]
    assert len(alone) == 1 and set(alone[0].get_ydata()) == {0.5} and alone[0].get_linestyle() == "--"
    assert alone[0].get_color() == "gray" and ax.lines[0].get_marker() == "o"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["white", "babble", "needle alone"]
    assert ax.get_title() == "NIAH, 300 s noise haystack, D" and ax.get_xlabel() == "SNR (dB)"
    assert tuple(fig.get_size_inches()) == (6.4, 4.0)
    plt.close(fig)
    fig = niah.plot_fig6(r["fig6"], "D")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "input length (s)"
    assert ax.get_title() == "NIAH, white noise 0 dB, D" and tuple(fig.get_size_inches()) == (6.4, 4.0)
    assert ax.lines[0].get_marker() == "o"
    plt.close(fig)


def test_load_needles_and_label_names(toy):
    from dasslib.data import AudioConf, AudioDataset, load_audio

    paths = {"eval_json": toy["json"], "label_csv": toy["csv"]}
    needles = niah.load_needles(paths, STATS)
    assert len(needles) == 4 and len(niah.load_needles(paths, STATS, max_needles=9)) == 4
    two = niah.load_needles(paths, STATS, max_needles=2)
    ds = AudioDataset(toy["json"], toy["csv"], AudioConf(mean=STATS[0], std=STATS[1]))
    for i, (fbank, wave, labels) in enumerate(two):
        assert torch.equal(fbank, ds[i][0]) and torch.equal(labels, ds[i][1]) and fbank.shape == (1024, 128)
        assert torch.equal(torch.as_tensor(wave), torch.as_tensor(load_audio(ds.entries[i].wav, 16000)))
    assert len(two) == 2
    assert niah.label_names(toy["csv"]) == ("Alpha", "Beta, with comma", "Gamma")


class Scorer(nn.Module):
    """Logits [0.5, 2, -1] for every item; keeps its inputs; inputs over ``limit`` frames fail as the CPU
    allocator does."""

    def __init__(self, limit):
        super().__init__()
        self.w, self.limit, self.seen = nn.Parameter(torch.zeros(1)), limit, []

    def forward(self, x):
        if x.shape[1] > self.limit:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                               "memory: you tried to allocate 85899345920 bytes. Error code 12")
        self.seen.append(x.detach().clone())
        return torch.tensor([0.5, 2.0, -1.0]).expand(x.shape[0], 3) + 0 * self.w


def test_needle_view_controls_scores_and_sound(monkeypatch):
    import ipywidgets as widgets

    from dasslib import display as D
    from dasslib.data.niah import haystack_waveform

    shown = []
    monkeypatch.setattr(D, "explore", lambda render, controls, live=None: shown.append((render, controls, live)))
    monkeypatch.setattr(D, "show_markdown", shown.append)
    monkeypatch.setattr(D, "audio", lambda *args, **kw: ("audio", args, kw))
    monkeypatch.setattr(D, "display", shown.append)
    needles, model, live = make_needles()[:2], Scorer(limit=450), object()
    loop = 0.2 * torch.sin(torch.arange(48000) * 0.04)
    choices = niah.haystack_choices(["white", "babble"], [0.0])
    niah.needle_view(model, needles, STATS, ("a", "b", "c"), [3, 2.0, 5], choices, seed=5, babble_wav=loop, live=live)
    (render, controls, got_live), = shown
    assert got_live is live
    assert controls == {
        "index": (widgets.Dropdown, dict(options=[("0: a, c", 0), ("1: a, b", 1)], value=0, description="needle")),
        "length_s": (widgets.Dropdown, dict(options=[3.0, 2.0, 5.0], value=5.0, description="length (s)")),
        "haystack": (widgets.Dropdown, dict(options=["zeros", "white 0 dB", "babble 0 dB"], value="zeros",
                                            description="haystack"))}
    shown.clear()
    render(1, 3.0, "white 0 dB")  # the needle (100 frames) in the middle: frames 100-199
    fbank, wave, _ = needles[1]
    x, start = build_haystack(fbank, wave, 3.0, 0.5, "white", 0.0, seed=(5, 1), mean=STATS[0], std=STATS[1])
    assert start == 100 and len(model.seen) == 1 and torch.equal(model.seen[0][0], x)
    p = [f"{1 / (1 + math.exp(-v)):.3f}" for v in (2.0, 0.5, -1.0)]
    assert shown[0] == ("Needle 1 in a 3 s white 0 dB haystack, at 1.00 s. Truth: **a, b**\n\n"
                        "| rank | class | probability | in truth |\n| --- | --- | --- | --- |\n"
                        f"| 1 | b | {p[0]} | yes |\n| 2 | a | {p[1]} | yes |\n| 3 | c | {p[2]} |  |")
    hay, first = haystack_waveform(wave, 3.0, 0.5, "white", 0.0, seed=(5, 1), needle_frames=100)
    tag, args, kw = shown[1]
    assert tag == "audio" and torch.equal(args[0], hay) and args[1:] == (16000,) and first == 16000
    assert kw == dict(start_s=1.0 - 2.5, seconds=5.0)  # 5 s around the needle's start
    shown.clear()
    render(0, 4.0, "babble 0 dB")
    fbank, wave, _ = needles[0]
    x, _ = build_haystack(fbank, wave, 4.0, 0.5, "babble", 0.0, seed=(5, 0), mean=STATS[0], std=STATS[1],
                          babble_wav=loop)
    assert torch.equal(model.seen[-1][0], x)
    assert shown[0].startswith("Needle 0 in a 4 s babble 0 dB haystack, at 1.50 s.")
    hay, first = haystack_waveform(wave, 4.0, 0.5, "babble", 0.0, seed=(5, 0), babble_wav=loop, needle_frames=100)
    assert torch.equal(shown[1][1][0], hay) and shown[1][2] == dict(start_s=first / 16000 - 2.5, seconds=5.0)
    shown.clear()
    render(0, 5.0, "zeros")  # 500 frames: more than the model takes
    assert shown[0].startswith("Needle 0 in a 5 s zeros haystack, at 2.00 s. Truth: **a, c**\n\n"
                               "Not scored: an input of 500 frames (5.0 s) does not fit in memory on cpu")
    assert shown[0].endswith(".") and len(shown) == 2
    shown.clear()
    niah.needle_view(model, needles, STATS, ("a", "b", "c"), [2.0], choices, live=live, sr=8000)  # seed 0
    shown.pop()[0](1, 2.0, "white 0 dB")
    fbank, wave, _ = needles[1]
    x, _ = build_haystack(fbank, wave, 2.0, 0.5, "white", 0.0, seed=(0, 1), mean=STATS[0], std=STATS[1], sr=8000)
    assert torch.equal(model.seen[-1][0], x)
    hay, first = haystack_waveform(wave, 2.0, 0.5, "white", 0.0, seed=(0, 1), sr=8000, needle_frames=100)
    assert torch.equal(shown[1][1][0], hay) and shown[1][1][1:] == (8000,) and len(hay[0]) == 200 * 80


class Seven(nn.Module):
    """Logits 0, 1, ..., 6 for every item."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.arange(7.0).expand(x.shape[0], 7) + 0 * self.w


def test_top_k_ranks_the_five_highest_by_default():
    names = tuple("abcdefg")
    table = niah.top_k(Seven(), torch.zeros(20, 8), torch.tensor([0.0, 0, 0, 0, 0, 1, 0]), names)
    assert table["rank"].tolist() == [1, 2, 3, 4, 5] and table["class"].tolist() == ["g", "f", "e", "d", "c"]
    assert table["in_truth"].tolist() == [False, True, False, False, False]
    assert table["probability"].tolist() == pytest.approx([1 / (1 + math.exp(-v)) for v in (6, 5, 4, 3, 2)])
