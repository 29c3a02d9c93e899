"""What the notebooks show a reader: figures saved and displayed inline, audio players, generated
result paragraphs and small ipywidgets explorers that fall back to a static view.

* :func:`show_figure`: save a Matplotlib figure (or seaborn grid) as a PNG in the run's output folder,
  close it and display *that* PNG inline, so the stored notebook holds the same picture as the file.
  The display carries ``metadata["dasslib"]["saved_as"]`` (the file name) and no figure repr, so
  nbval compares no volatile text (it skips image payloads).
* :func:`audio` / :func:`show_audio`: an ``IPython.display.Audio`` player of a short excerpt of a
  waveform (16-bit WAV embedded in the notebook: ~32 kB per second at 16 kHz).
* :func:`show_markdown`: display generated Markdown (the "What this run shows" paragraphs).
* :func:`explore`: controls (ipywidgets) above a view that re-draws on every change, when a live
  Jupyter frontend runs the kernel (:func:`widgets_live`); under papermill, nbval, nbconvert or plain
  Python only the default view is drawn, as a static output.
"""
from __future__ import annotations

import io
import os

import numpy as np
from IPython.display import Audio, Image, Markdown, display

from .atomic import atomic_write_bytes

__all__ = ["DPI", "MAX_AUDIO_SECONDS", "figure_png", "show_figure", "audio", "show_audio", "show_markdown",
           "widgets_live", "explore"]

DPI = 100                 # saved and displayed PNGs: 100 dots per inch (a 9 x 4.5 in figure is 900 x 450 px)
MAX_AUDIO_SECONDS = 6.0   # longest excerpt a player embeds by default


def figure_png(fig, dpi: int = DPI) -> bytes:
    """PNG bytes of a Matplotlib ``Figure`` (or anything with a ``savefig``, e.g. a seaborn
    ``FacetGrid``), cropped to its content (``bbox_inches="tight"``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(getattr(fig, "figure", fig))     # a FacetGrid holds its Figure in .figure


def show_figure(fig, path: str | os.PathLike | None = None, dpi: int = DPI) -> None:
    """Save ``fig`` as a PNG at ``path`` (when given), close it and display the PNG inline.

    fig: a Matplotlib ``Figure`` or a seaborn grid. The inline image is the saved file's bytes;
    its output metadata ``{"dasslib": {"saved_as": <file name>}}`` names the file (None when not
    saved). Returns None, so a cell ending with this call shows no repr."""
    png = figure_png(fig, dpi)
    _close(fig)
    name = None
    if path is not None:
        path = atomic_write_bytes(png, path)
        name = path.name
    display(Image(data=png, format="png"), metadata={"dasslib": {"saved_as": name}})


def audio(wave, sr: int = 16000, start_s: float = 0.0, seconds: float | None = MAX_AUDIO_SECONDS) -> Audio:
    """An ``IPython.display.Audio`` player of ``wave`` (``(samples,)`` or ``(1, samples)``, floats)
    from ``start_s`` for at most ``seconds`` (None: to the end), peak-normalized by the player."""
    wave = np.asarray(wave.detach().cpu() if hasattr(wave, "detach") else wave, dtype=np.float64)
    if wave.ndim == 2 and wave.shape[0] == 1:
        wave = wave[0]
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"wave must be (samples,) or (1, samples), got shape {wave.shape}")
    first = max(0, int(round(start_s * sr)))
    last = wave.size if seconds is None else min(wave.size, first + int(round(seconds * sr)))
    if last <= first:
        raise ValueError(f"nothing to play: start {start_s} s is past the end ({wave.size / sr:g} s)")
    part = wave[first:last]
    if not np.any(part):            # silence: the player's normalization would divide by zero
        return Audio(data=part, rate=sr, normalize=False)
    return Audio(data=part, rate=sr)


def show_audio(title: str, wave, sr: int = 16000, start_s: float = 0.0,
               seconds: float | None = MAX_AUDIO_SECONDS) -> None:
    """Display ``title`` (Markdown) and a player of the excerpt (see :func:`audio`)."""
    display(Markdown(title))
    display(audio(wave, sr, start_s, seconds))


def show_markdown(text: str) -> None:
    """Display generated Markdown ``text``."""
    display(Markdown(text))


def widgets_live() -> bool:
    """True when a live Jupyter frontend runs this kernel, so widgets can call back into it.

    ``DASSLIB_WIDGETS=1`` / ``0`` decides; otherwise True when the kernel was started by a Jupyter
    server (JupyterLab, Notebook: ``JPY_SESSION_NAME`` is set) or by VS Code (``__vsc_ipynb_file__``
    in the user namespace), False under papermill, nbval, nbconvert and plain Python."""
    forced = os.environ.get("DASSLIB_WIDGETS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if os.environ.get("JPY_SESSION_NAME"):
        return True
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:       # pragma: no cover - IPython is a dependency
        return False
    return shell is not None and "__vsc_ipynb_file__" in getattr(shell, "user_ns", {})


def _draw(render, values: dict, save_to=None) -> None:
    fig = render(**values)
    if fig is not None:
        show_figure(fig, save_to)


def explore(render, controls: dict, save_to: str | os.PathLike | None = None, live: bool | None = None):
    """Let a reader change a view instead of editing code.

    render: ``render(**values) -> Figure | None`` draws the view for the controls' values (a
    returned figure goes through :func:`show_figure`; None: it displayed its own outputs).
    controls: ``{name: (widget class, kwargs with the default "value")}`` (or a widget); the
    widgets are built only in a live notebook, so a static run stores no widget state.
    save_to: the default view's figure is saved there (the notebook's figure file); views picked
    later are only shown. live: None = :func:`widgets_live`.

    Static (not live): draws the default view only, as plain outputs (what papermill and nbval
    store); returns None. Live: displays the controls above an ``Output`` holding the default
    view, re-drawn on every change; returns the ``VBox``."""
    live = widgets_live() if live is None else live
    values = {name: w.value if hasattr(w, "value") else w[1]["value"] for name, w in controls.items()}
    if not live:
        _draw(render, values, save_to)
        return None
    import ipywidgets as widgets

    controls = {name: w if hasattr(w, "observe") else w[0](**w[1]) for name, w in controls.items()}
    out = widgets.Output()

    def redraw(_change=None):
        out.clear_output(wait=True)
        with out:
            _draw(render, {name: w.value for name, w in controls.items()})

    with out:
        _draw(render, values, save_to)
    for w in controls.values():
        w.observe(redraw, names="value")
    box = widgets.VBox([widgets.HBox(list(controls.values())), out])
    display(box)
    return box
