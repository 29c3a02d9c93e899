"""dasslib.display: figures saved and shown as the same PNG, audio excerpts, the widget fallback."""
import base64
import io
import wave

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dasslib import display as D  # noqa: E402


@pytest.fixture
def shown(monkeypatch):
    """Objects passed to IPython's display, with their metadata."""
    seen = []
    monkeypatch.setattr(D, "display", lambda obj, metadata=None: seen.append((obj, metadata)))
    return seen


def _wav_samples(player):
    with wave.open(io.BytesIO(player.data)) as w:
        return w.getframerate(), w.getnframes()


def test_show_figure_saves_and_displays_the_same_png(tmp_path, shown):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2, 3])
    D.show_figure(fig, tmp_path / "line.png", dpi=50)
    png = (tmp_path / "line.png").read_bytes()
    (img, meta), = shown
    assert img.data == png and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert meta == {"dasslib": {"saved_as": "line.png"}}
    assert not plt.get_fignums()                      # closed: the inline backend shows it no second time
    w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert w <= 4 * 50 and h <= 3 * 50                # bbox "tight" crops; never larger than size x dpi


def test_show_figure_without_path_and_with_a_seaborn_grid(tmp_path, shown):
    import pandas as pd
    import seaborn as sns

    g = sns.catplot(data=pd.DataFrame(dict(x=["a", "b"], y=[1, 2])), x="x", y="y", kind="bar", height=2)
    D.show_figure(g)
    (img, meta), = shown
    assert meta == {"dasslib": {"saved_as": None}} and img.data[:4] == b"\x89PNG"
    assert not plt.get_fignums() and not list(tmp_path.iterdir())


def test_audio_excerpt_length_and_rate():
    sr = 16000
    x = np.sin(np.arange(10 * sr) / sr * 2 * np.pi * 440)
    player = D.audio(x[None], sr, start_s=2.0, seconds=3.0)
    assert _wav_samples(player) == (sr, 3 * sr)
    assert _wav_samples(D.audio(x, sr, start_s=8.5, seconds=3.0)) == (sr, int(1.5 * sr))   # cut at the end
    assert _wav_samples(D.audio(np.zeros(sr), sr)) == (sr, sr)                            # silence plays
    assert 'src="data:audio/wav;base64,' in player._repr_html_()
    with pytest.raises(ValueError, match="nothing to play"):
        D.audio(x, sr, start_s=11.0)
    with pytest.raises(ValueError, match="samples"):
        D.audio(np.zeros((2, 5)), sr)


def test_widgets_live_env_switch(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.delenv("DASSLIB_WIDGETS", raising=False)
    assert D.widgets_live() is False                  # plain Python, papermill, nbval
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/04_niah.ipynb")
    assert D.widgets_live() is True                   # a kernel started by a Jupyter server
    monkeypatch.setenv("DASSLIB_WIDGETS", "0")
    assert D.widgets_live() is False


def test_explore_static_draws_the_default_view_once(tmp_path, shown):
    import ipywidgets as widgets

    calls = []

    def render(n, label):
        calls.append((n, label))
        fig, ax = plt.subplots()
        ax.bar(range(n), range(n))
        return fig

    controls = dict(n=(widgets.IntSlider, dict(value=3, min=1, max=5)),
                    label=(widgets.Dropdown, dict(options=["a", "b"], value="b")))
    from ipywidgets.widgets.widget import _instances  # every live widget model (ipywidgets 8)

    before = len(_instances)
    assert D.explore(render, controls, tmp_path / "view.png", live=False) is None
    assert calls == [(3, "b")] and len(_instances) == before   # no widget built: no state stored
    assert len(shown) == 1 and shown[0][1] == {"dasslib": {"saved_as": "view.png"}}
    assert shown[0][0].data == (tmp_path / "view.png").read_bytes()


def test_explore_live_redraws_on_change(tmp_path, shown):
    import ipywidgets as widgets

    calls = []

    def render(n):
        calls.append(n)
        fig, _ = plt.subplots()
        return fig

    box = D.explore(render, dict(n=(widgets.IntSlider, dict(value=2, min=1, max=5))), tmp_path / "view.png", live=True)
    slider, = box.children[0].children
    assert isinstance(box, widgets.VBox) and isinstance(slider, widgets.IntSlider) and slider.max == 5
    assert calls == [2] and (tmp_path / "view.png").is_file()
    saved = (tmp_path / "view.png").read_bytes()
    slider.value = 4
    assert calls == [2, 4]
    assert (tmp_path / "view.png").read_bytes() == saved            # later picks are shown, not saved
    assert sum(obj is box for obj, _ in shown) == 1                 # the controls are displayed once


def test_show_audio_and_markdown(shown):
    D.show_audio("**a tone**", np.ones(16000) * 0.1, seconds=0.5)
    D.show_markdown("### title")
    (title, _), (player, _), (md, _) = shown
    assert title.data == "**a tone**" and md.data == "### title"
    assert _wav_samples(player) == (16000, 8000)
    header = base64.b64decode(player._repr_html_().split("base64,")[1].split('"')[0])[:4]
    assert header == b"RIFF"
