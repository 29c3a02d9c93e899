"""What the notebooks show from a finished run: results read back from the committed GPU folders,
the generated "What this run shows" paragraphs, learning curves, scaling views, NIAH listening and
exploring functions."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dasslib import display as D  # noqa: E402
from dasslib.experiments import aum, common, distill, efficiency, niah, ssam  # noqa: E402

GPU = Path(__file__).resolve().parents[1] / "results" / "gpu"


@pytest.fixture
def shown(monkeypatch):
    seen = []
    monkeypatch.setattr(D, "display", lambda obj, metadata=None: seen.append((obj, metadata)))
    return seen


def test_distill_results_and_summary_from_the_gpu_run():
    r = distill.read_results(GPU / "01_distill")
    assert r["chance"] == pytest.approx(0.07723076923076923)
    assert list(r["table1"].index) == ["AST-Small (teacher)", "DASS-Small", "DASS-Small + KD (AST-Small)"]
    # six trained runs, the re-used DASS teacher once; AST-Small trained 5 epochs, the students 3
    assert r["history"].groupby("run").size().to_dict() == {
        "AST-Small": 5, "AST-Tiny": 5, "DASS-Small": 3, "DASS-Small + KD (AST-Small)": 3,
        "DASS-Small + KD (AST-Tiny)": 3, "DASS-Small + KD (DASS-Small + KD)": 3}
    text = distill.summary(r, "gpu", 3, 5)
    assert text.startswith("### What this run shows")
    assert "`params/gpu/01_distill.yaml`" in text and "Students trained 3 epoch(s), teachers 5." in text
    assert "with KD 0.190: KD raised the student's mAP (+0.086)" in text      # 0.18998 - 0.10362
    assert "stayed below its teacher (-0.024)" in text                      # 0.18998 - 0.21432
    assert "the strongest teacher (AST-Small, 0.214) gave the best student (0.190)" in text
    assert "1 of 3 students passed their teacher" in text and "3 of 3 KD students beat" in text


def test_distill_plot_tables_returns_a_figure():
    r = distill.read_results(GPU / "01_distill")
    fig = distill.plot_tables(r["table1"], r["table2"], r["chance"])
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 3
    plt.close(fig)


def test_aum_results_and_summary_from_the_gpu_run():
    r = aum.read_results(GPU / "03_aum_scratch")
    assert r["chance"] is None                                  # this run did not record it
    assert r["table2"].shape == (3, 3) and r["table2"].loc["Fo-Fo", "head"] == pytest.approx(0.07723076923076923)
    assert len(r["history"]["run"].unique()) == 10              # AuM and Fo-Bi/middle: one run
    text = aum.summary(r, "gpu", 1)
    assert "AST is ahead by 0.029, unlike the paper." in text   # 0.11859 - 0.08962
    assert "best Bi-Bi / middle (0.097), worst Fo-Fo / head (0.077)" in text
    assert "Fo-Bi / middle ranks 4 of 9" in text and "The head position is the worst of its row in 3 of 3 rows." in text
    assert "did not record the constant predictor" in text
    with_chance = dict(r, chance=0.08,
                       combined=pd.concat([r["combined"], pd.DataFrame({"mAP": [0.08]}, index=["constant predictor"])]))
    assert "9 of 11 runs are above it" in aum.summary(with_chance, "gpu")


def test_ssam_results_and_summary_from_the_gpu_run():
    r = ssam.read_results(GPU / "02_ssam_pretrain")
    assert list(r["table4"]["ssm_type"]) == ["None", "Mamba", "Vim"]      # "None" is not read as a missing value
    text = ssam.summary(r, "gpu", 3)
    assert "SSAST ahead of SSAM, unlike the paper." in text
    assert "Pretraining moved SSAM-Tiny from 0.239 (frozen random init) to 0.422 (+0.183)." in text
    assert "SSAM-Tiny: best (8, 16) (0.433), worst (4, 8) (0.384)" in text
    assert "Mamba 0.422, Vim 0.439; Vim is ahead by 0.017." in text
    g = ssam.plot_tables(r["combined"])
    assert len(g.axes.flat) == 3
    plt.close(g.figure)


def test_niah_results_and_summary_from_the_gpu_run():
    r = niah.read_results(GPU / "04_niah")
    assert set(r) == {"fig3", "fig4", "fig5", "fig6", "scaling"}
    text = niah.summary(r, "gpu", "dass_small/mean")
    assert "0.283 alone, 0.248 at 30 s, 0.080 at 9000 s (72% below the needle alone)" in text
    assert "At 300 s, the longest length both ran, dass_small/mean lost 45% and ast_small/sinusoidal lost 36%" in text
    assert "the SSM did not hold up better, unlike the paper." in text
    assert "dass_small ran 9000 s in 1.09 s, 34.8 GiB peak" in text
    for plot, args in ((niah.plot_fig3, (r["fig3"], 50.0)), (niah.plot_fig4, (r["fig4"],)),
                       (niah.plot_fig5, (r["fig5"], 300.0, "m")), (niah.plot_fig6, (r["fig6"], "m"))):
        fig = plot(*args)
        assert fig.axes[0].get_title().startswith("NIAH")
        plt.close(fig)


def test_efficiency_results_views_and_summary_from_the_gpu_run(shown, tmp_path):
    r = efficiency.read_results(GPU / "05_efficiency")
    assert r["metadata"]["device"] == "NVIDIA H100 80GB HBM3"
    assert efficiency.x_axes(r["sweep"]) == {"seconds": "length_s", "frames": "frames"}   # no token counts stored
    text = efficiency.summary(r, "gpu")
    assert "dass_small faster from ~417 s; ssam_small faster from ~559 s" in text
    assert "not faster at any common length: ssam_base" in text
    assert "dass_small 316.9 s of audio per second, 0.24x ast_base_sdpa (1325.8)" in text
    assert "ast_base_eager 450 s (memory)" in text
    fig = efficiency.plot_scaling_grid(r["sweep"], "median_ms", ["inference"], models=["dass_small", "ast_base_sdpa"],
                                       x="frames")
    assert len(fig.axes[0].lines) == 2 and fig.axes[0].get_xlabel() == "input frames"
    plt.close(fig)
    assert efficiency.scaling_view(r["sweep"], "median_ms", ["inference", "train"], {"inference": 1},
                                   tmp_path / "t.png", live=False) is None
    assert shown[0][1] == {"dasslib": {"saved_as": "t.png"}} and (tmp_path / "t.png").is_file()


def test_profile_sentence():
    scopes = {"gpu": "shows X."}
    assert common.profile_sentence("gpu", "04_niah", scopes) == "Profile **gpu** (`params/gpu/04_niah.yaml`): shows X."
    assert "no profile file" in common.profile_sentence("mine", "04_niah", scopes)


def test_learning_curves(tmp_path, shown):
    for name, maps in (("a", [0.1, 0.2, 0.3]), ("b", [0.3, 0.2])):
        (tmp_path / name).mkdir()
        pd.DataFrame(dict(epoch=range(1, len(maps) + 1), mAP=maps, train_loss=[1.0] * len(maps))).to_csv(
            tmp_path / name / "history.csv", index=False)
    hist = common.read_histories({"run a": tmp_path / "a", "run b": tmp_path / "b", "none": tmp_path / "missing"})
    assert list(hist.columns[:2]) == ["run", "epoch"]
    assert hist.groupby("run").size().to_dict() == {"run a": 3, "run b": 2}
    fig = common.plot_learning_curves(hist, ["run b"], "train_loss")
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) >= 1 and fig.axes[0].get_ylabel() == "train_loss"
    plt.close(fig)
    fig = common.plot_learning_curves(hist)  # the training loss beside the eval metric
    assert [ax.get_ylabel() for ax in fig.axes] == ["train_loss", "mAP"]
    assert fig.axes[0].get_legend() is None and fig.axes[1].get_legend() is not None
    plt.close(fig)
    with pytest.raises(ValueError, match="eval_loss"):
        common.plot_learning_curves(hist, metric="eval_loss")
    assert common.learning_curves_view(hist, tmp_path / "curves.png", live=False) is None
    assert len(shown) == 1 and (tmp_path / "curves.png").is_file()


def test_read_stops_and_sentence(tmp_path):
    import json

    for name, stopped in (("a", {"reason": "plateau", "epochs": 7, "best_epoch": 4}),
                          ("b", {"reason": "epoch_cap", "epochs": 20, "best_epoch": 20}), ("c", None)):
        (tmp_path / name).mkdir()
        payload = {"best": {"epoch": 3}, **({"stopped": stopped} if stopped else {})}
        (tmp_path / name / "metrics.json").write_text(json.dumps(payload))
    stops = common.read_stops({"A": tmp_path / "a", "B": tmp_path / "b", "C": tmp_path / "c",
                               "none": tmp_path / "missing"})
    assert stops[["run", "reason", "best_epoch"]].to_dict("list") == {
        "run": ["A", "B", "C"], "reason": ["plateau", "epoch_cap", "fixed_epochs"], "best_epoch": [4, 20, 3]}
    assert stops["epochs"].iloc[:2].tolist() == [7, 20] and pd.isna(stops["epochs"].iloc[2])
    text = common.stops_sentence(stops)
    assert text.startswith("Training: 1 of 3 run(s) stopped on the plateau rule")
    assert "1 hit the epoch cap before the plateau rule fired (B)" in text and "fixed number" in text
    assert common.stops_sentence(stops.iloc[:0]) == ""


def test_loudest_window():
    sr = 16000
    x = np.zeros(10 * sr)
    x[6 * sr:7 * sr] = 1.0
    start = common.loudest_window(x, sr, seconds=3.0)
    assert start <= 6.0 and start + 3.0 >= 7.0 and start % 0.5 == 0
    assert common.loudest_window(x[:2 * sr], sr, seconds=3.0) == 0.0


def test_haystack_waveform_matches_the_fbank_haystack():
    from dasslib.data import haystack_noise, insert_index, noise_num_samples

    sr, frames, length = 16000, 100, 5.0              # a 1 s "needle" of 100 frames in a 5 s haystack
    needle = torch.linspace(-0.5, 0.5, frames * 160)
    from dasslib.data.niah import haystack_waveform

    wave, start = haystack_waveform(needle, length, 0.25, "zeros", needle_frames=frames)
    assert wave.shape == (1, 500 * 160) and start == insert_index(0.25, 500, frames) * 160 == 100 * 160
    assert torch.equal(wave[0, start:start + len(needle)], needle) and wave[0, :start].abs().sum() == 0
    noisy, start = haystack_waveform(needle, length, 0.5, "white", 0.0, seed=(0, 3), needle_frames=frames)
    noise = haystack_noise("white", noise_num_samples(400, sr), needle, 0.0, seed=(0, 3))[0]
    assert torch.equal(noisy[0, :start], noise[:start])                     # the samples NIAH featurizes
    assert torch.equal(noisy[0, start + len(needle):], noise[start:400 * 160])
    rms = lambda x: float((x - x.mean()).pow(2).mean().sqrt())           # noqa: E731
    assert rms(noise) == pytest.approx(rms(needle), rel=1e-4)               # 0 dB SNR


class _Fixed(torch.nn.Module):
    """Ignores its input: logits [0, 3, 1, 2, -1] for every item."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.tensor([0.0, 3.0, 1.0, 2.0, -1.0]).expand(x.shape[0], 5) + 0 * self.w


def test_top_k_and_needle_view(shown):
    names = ("a", "b", "c", "d", "e")
    labels = torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0])
    table = niah.top_k(_Fixed(), torch.zeros(50, 8), labels, names, k=3)
    assert list(table["class"]) == ["b", "d", "c"] and list(table["in_truth"]) == [False, False, True]
    assert table["probability"].iloc[0] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    needles = [(torch.zeros(100, 8), torch.randn(16000) * 0.1, labels)]
    choices = niah.haystack_choices(["white"], [0.0, 10.0])
    assert choices == {"zeros": ("zeros", None), "white 0 dB": ("white", 0.0), "white 10 dB": ("white", 10.0)}
    assert niah.needle_view(_Fixed(), needles, (0.0, 1.0), names, [2.0, 3.0], choices, live=False) is None
    text = shown[0][0].data
    assert "Needle 0 in a 3 s zeros haystack" in text and "Truth: **c, e**" in text
    assert "| 3 | c | 0.731 | yes |" in text
    assert type(shown[1][0]).__name__ == "Audio"


def test_sslalm_summary_from_the_gpu_run():
    from dasslib.experiments import sslalm
    r = sslalm.read_results(GPU / "06_sslalm")
    assert set(r) == {"table1", "stage_losses", "generation_timing", "captions"}
    text = sslalm.summary(r, "gpu")
    assert "`params/gpu/06_sslalm.yaml`" in text
    # every system wrote one caption for all 500 scored clips: no "highest mAP" among equals
    assert "No system classifies above the constant predictor" in text and "Highest mAP" not in text
    assert "Distinct captions over the 500 scored eval clips: ssLALM 1, hybrid 1, LTU-like 1." in text
    assert "dasslib's Mamba LM 1.099 s, transformers' generate 1.975 s (1.8x); same tokens: True." in text


def test_sslalm_summary_names_every_best_system():
    from dasslib.experiments import sslalm
    t = pd.DataFrame(dict(system=["a", "b", "c"], trainable=[1e6] * 3, total=[2e6] * 3, cls_mAP=[0.3, 0.3, 0.1],
                          chance_mAP=[0.08] * 3, caption_CIDEr=[0.1] * 3, yes_no_acc=[0.5] * 3))
    caps = pd.DataFrame(dict(a=["x", "y"], b=["x", "x"], c=["z", "z"], reference=["x", "y"]))
    text = sslalm.summary(dict(table1=t, captions=caps), "gpu")
    assert "Highest mAP here: a, b." in text
    assert "Distinct captions over the 2 scored eval clips: a 2, b 1, c 1." in text


def test_sslalm_summary_reports_the_graph_replay_when_timed():
    from dasslib.experiments import sslalm
    g = pd.DataFrame(dict(implementation=["dasslib MambaLM (recurrent)", "transformers MambaForCausalLM.generate",
                                          "dasslib MambaLM (recurrent, CUDA graph)"],
                          seconds=[1.0, 2.0, 0.1], new_tokens=[128] * 3, hidden_size=[768] * 3,
                          num_layers=[24] * 3, same_tokens=[True] * 3, device=["cuda"] * 3))
    text = sslalm.summary(dict(generation_timing=g), "gpu")
    assert "Replayed as a CUDA graph: 0.100 s (20.0x transformers'); same tokens: True." in text
