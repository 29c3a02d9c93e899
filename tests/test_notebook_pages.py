"""The committed notebooks as a reader opens them: exported to HTML with nbconvert, every figure a
notebook saves is also shown inline, 01 and 04 hold audio players, each notebook ends with its
generated "What this run shows" paragraph, no widget is stored and each file stays small.

Covers the CPU notebooks (notebooks/0*.ipynb, their stored default run) and the executed GPU
notebooks under results/ (re-rendered by scripts/render_results.py: there, every PNG of the folder
must be an inline image, byte for byte)."""
import base64
import json
import re
from pathlib import Path

import pytest

nbconvert = pytest.importorskip("nbconvert")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
CPU = sorted((ROOT / "notebooks").glob("0*.ipynb"))
GPU = sorted((ROOT / "results").glob("*/*/0*.ipynb"))
MAX_BYTES = 2_000_000
PLAYERS = {"01_distill": 1, "04_niah": 5}          # CPU notebooks: the least number of audio players
GPU_PENDING: set = set()     # CPU notebooks whose gpu profile has not been run yet (no results/gpu/ folder)
SUMMARY = "### What this run shows"
IMG = re.compile(r'<img[^>]+src="data:image/png;base64,([A-Za-z0-9+/=\s]+)"')


def _ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def _html(nb) -> str:
    html, _ = nbconvert.HTMLExporter(template_name="lab").from_notebook_node(nb)
    return html


def _png_outputs(nb):
    """(saved_as, png bytes) of every inline PNG output."""
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if "image/png" in o.get("data", {}):
                name = o.get("metadata", {}).get("dasslib", {}).get("saved_as")
                out.append((name, base64.b64decode(o["data"]["image/png"])))
    return out


def _widget_outputs(cells) -> int:
    return sum("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               for c in cells for o in c.get("outputs", []))


def _check_page(path):
    """Checks shared by every committed notebook; returns (notebook, html, inline PNGs)."""
    assert path.stat().st_size < MAX_BYTES, f"{path.name}: {path.stat().st_size} bytes"
    raw = path.read_text()
    assert not re.search(r"/(work|root|home)/\w", raw), "a machine path is stored"
    nb = nbformat.reads(raw, as_version=4)
    html = _html(nb)
    inline = [base64.b64decode("".join(m.split())) for m in IMG.findall(html)]
    pngs = _png_outputs(nb)
    assert pngs, "no inline figure"
    for name, png in pngs:
        assert png in inline, f"{name}: stored but not rendered as an image in the HTML"
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    md = "".join("".join(o.get("data", {}).get("text/markdown", "")) for o in last.get("outputs", []))
    assert md.startswith(SUMMARY), "the last cell does not show the results paragraph"
    assert "What this run shows" in html and re.search(r"\d\.\d", md), "the paragraph has no measured number"
    return nb, html, pngs


@pytest.mark.parametrize("path", CPU, ids=_ids(CPU))
def test_cpu_notebook_page(path):
    nb, html, pngs = _check_page(path)
    assert "widgets" not in nb.metadata and _widget_outputs(nb.cells) == 0   # widgets degrade to static views
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "savefig" not in code and "plt.close" not in code, "figures go through dasslib.display.show_figure"
    saves = set(re.findall(r"""["']([\w]+\.png)["']""", code))        # file names written literally
    shown = {name for name, _ in pngs}
    assert None not in shown and saves <= shown, f"saved but not shown inline: {saves - shown}"
    assert len(html.split("<audio")) - 1 >= PLAYERS.get(path.stem, 0)
    assert 'src="data:audio/wav;base64,' in html or path.stem not in PLAYERS


@pytest.mark.parametrize("path", GPU, ids=_ids(GPU))
def test_executed_gpu_notebook_page(path):
    nb, html, pngs = _check_page(path)
    shown = dict(pngs)
    for png in sorted(path.parent.glob("*.png")):
        assert png.name in shown, f"{png.name} is in the folder but not inline"
        assert shown[png.name] == png.read_bytes(), f"{png.name}: the inline image is not the file"
    added = [c for c in nb.cells if "rerendered" in c.metadata.get("dasslib", {})]
    assert added and added[0].cell_type == "markdown" and "scripts/render_results.py" in added[0].source
    assert _widget_outputs(added) == 0            # (the run's own progress bars stay as the run stored them)
    assert nb.cells[-1] is added[-1]                                   # the paragraph closes the notebook


def test_every_cpu_notebook_has_a_page_test():
    assert [p.stem for p in CPU] == ["01_distill", "02_ssam_pretrain", "03_aum_scratch", "04_niah", "05_efficiency",
                                     "06_sslalm"]
    assert {p.stem for p in GPU} == {p.stem for p in CPU} - GPU_PENDING, "every notebook has an executed GPU run"
    assert json.loads((ROOT / "notebooks" / "04_niah.ipynb").read_text())["nbformat"] == 4
