"""Re-render the figures and the results paragraph of executed notebooks from their saved CSV files.

Usage (from the repository root, no GPU needed):
    python scripts/render_results.py                      # every results/<profile>/<folder>/0*.ipynb
    python scripts/render_results.py results/gpu/04_niah/04_niah.ipynb [...]

The GPU runs under results/gpu/ were executed before the notebooks displayed their figures inline
(they saved PNGs and closed them). This script runs, in a fresh kernel with the repository root as the
working directory, only the cells of the current notebook (notebooks/<name>.ipynb) tagged
``results-view``: the figures, the learning curves and the "What this run shows" paragraph. Those cells
read nothing but the files the run saved in its ``out_dir`` (CSV, history.csv, run_metadata.json). The
kernel first runs the notebook's parameters cell and the run's own parameters (papermill's record in
the executed notebook's metadata), so titles and text use the run's values.

The executed cells are added to the executed notebook, each after the cell of the run that computed
its data (the figure after its sweep), the results paragraph at the end, after a markdown note and a
setup cell (imports, ``profile``) that say what was re-rendered, when and from which commit; every
cell and output of the run stays as it was. The PNGs in the folder are rewritten by the same cells (the
same data, drawn by the current code), so the inline images are the files. Running the script again
replaces the cells it added before. A view the run itself already shows (a figure displayed inline by a
run made after the figures went inline, or the same Markdown) is not added again.
"""
from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
VIEW = "results-view"
MARK = "rerendered"          # metadata["dasslib"][MARK] on every cell this script adds
SETUP = {
    "01_distill": ("from dasslib.experiments import distill\n"
                   "from dasslib.experiments.common import learning_curves_view"),
    "02_ssam_pretrain": "from dasslib.experiments import ssam",
    "03_aum_scratch": ("from dasslib.experiments import aum as X\n"
                       "from dasslib.experiments.common import learning_curves_view"),
    "04_niah": "import pandas as pd\nfrom dasslib.experiments import niah",
    "05_efficiency": "import pandas as pd\nfrom dasslib.experiments import efficiency",
    "06_sslalm": "import pandas as pd\nfrom dasslib.experiments import sslalm",
}


def _git(*args) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip()


def _tags(cell) -> list:
    return cell.get("metadata", {}).get("tags", [])


def _mark(cell, stamp: str):
    cell.metadata.setdefault("dasslib", {})[MARK] = stamp
    return cell


def _added(cell) -> bool:
    return MARK in cell.get("metadata", {}).get("dasslib", {})


def _saves_png(cell) -> bool:
    """A cell of the run that saved a figure (and showed none)."""
    return cell.cell_type == "code" and ".png" in cell.source and not any(
        o.get("output_type") == "display_data" for o in cell.get("outputs", []))


def _anchor(template_cells, view_index, executed_cells) -> int | None:
    """Index in ``executed_cells`` of the run's cell most like the template cell before this view
    cell (the one that computed its data): the most of that cell's lines found in it, at least half;
    None when no cell has that many."""
    before = next((c for c in reversed(template_cells[:view_index]) if VIEW not in _tags(c)), None)
    if before is None:
        return None
    wanted = [line.strip() for line in before.source.splitlines() if line.strip()]
    best, best_share = None, 0.5
    for i, c in enumerate(executed_cells):
        if c.cell_type != before.cell_type or "injected-parameters" in _tags(c) or _added(c) or not wanted:
            continue
        lines = {line.strip() for line in c.source.splitlines()}
        share = sum(line in lines for line in wanted) / len(wanted)
        if share >= best_share and (best is None or share > best_share):
            best, best_share = i, share
    return best


def _shown_by_run(cell, executed_cells) -> bool:
    """True when a cell of the run with the same source already shows what ``cell`` shows: an image
    (a run made after the figures went inline) or the same Markdown text."""
    def shown(c):
        return [o for o in c.get("outputs", []) if o.get("output_type") == "display_data"]

    def markdown(outs):
        return ["".join(o.get("data", {}).get("text/markdown", "")) for o in outs]

    mine = shown(cell)
    for c in executed_cells:
        if c.cell_type != "code" or c.source.strip() != cell.source.strip() or _added(c) or not shown(c):
            continue
        if markdown(mine) == markdown(shown(c)):
            return True
    return False


def source_commit() -> str:
    """HEAD's short hash, noting uncommitted changes outside results/ (the files this script rewrites)."""
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"))
    return _git("rev-parse", "--short", "HEAD") + (" with uncommitted changes" if dirty else "")


def render(path: Path, timeout: int = 600, commit: str | None = None) -> Path:
    path = Path(path).resolve()
    name = path.stem
    if name not in SETUP:
        raise SystemExit(f"{path}: no notebook {name!r} to render from (known: {sorted(SETUP)})")
    profile = path.parent.parent.name
    template = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    executed = nbformat.read(path, as_version=4)
    executed.cells = [c for c in executed.cells if not _added(c)]
    params = executed.metadata.get("papermill", {}).get("parameters", {})
    if not params:
        raise SystemExit(f"{path}: no papermill parameters in its metadata: not an executed notebook")
    # the files are read from this folder: a run made with scripts/run_profile.sh saved them in its scratch
    # folder (its out_dir) and copied them here
    params = dict(params, out_dir=str(path.parent.relative_to(ROOT)))
    tcells = template.cells
    p_index = next(i for i, c in enumerate(tcells) if "parameters" in _tags(c))
    views = [i for i, c in enumerate(tcells) if VIEW in _tags(c)]
    commit = commit or source_commit()
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    injected = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    setup_src = (f"# added by scripts/render_results.py: what the re-rendered cells below need\n"
                 f"from dasslib.display import show_figure, show_markdown\n{SETUP[name]}\n"
                 f"profile = {params.get('profile', profile)!r}   # results/<profile>/ holds this run")
    run_cells = [nbformat.v4.new_code_cell(tcells[p_index].source),
                 nbformat.v4.new_code_cell(injected),
                 nbformat.v4.new_code_cell(tcells[p_index + 1].source),   # the parameter check: P, out
                 nbformat.v4.new_code_cell(setup_src)]
    run_cells += [nbformat.v4.new_code_cell(tcells[i].source) if tcells[i].cell_type == "code"
                  else nbformat.v4.new_markdown_cell(tcells[i].source) for i in views]
    run = nbformat.v4.new_notebook(cells=run_cells, metadata=dict(kernelspec=template.metadata["kernelspec"]))
    NotebookClient(run, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()

    rendered = []
    for i, cell in zip(views, run.cells[4:]):
        cell.metadata["tags"] = list(_tags(tcells[i]))
        if cell.cell_type == "code":
            cell.execution_count = None
            for o in cell.outputs:
                o.pop("execution_count", None)
        rendered.append((i, _mark(cell, stamp)))
    note = _mark(nbformat.v4.new_markdown_cell(
        f"**Re-rendered without a GPU** ({stamp[:10]}, dasslib at commit `{commit}`): the cells tagged "
        f"`{VIEW}` below (figures, learning curves, \"What this run shows\") were added by "
        "`scripts/render_results.py` after the run. They read only the files this run saved in this folder "
        "(CSV, history, metadata) and redraw the folder's PNGs from them. Every other cell and output is the "
        "run's own, unchanged."), stamp)
    setup = _mark(nbformat.v4.new_code_cell(setup_src), stamp)

    cells = list(executed.cells)
    rendered = [(i, c) for i, c in rendered if not _shown_by_run(c, cells)]
    summary = rendered.pop() if rendered and "summary(" in rendered[-1][1].source else None
    last = None                  # index of the cell inserted last: template order is kept
    for i, cell in rendered:
        anchor = _anchor(tcells, i, cells)
        pos = len(cells) if anchor is None and last is None else max(
            anchor + 1 if anchor is not None else 0, last + 1 if last is not None else 0)
        while pos < len(cells) and (_added(cells[pos]) or _saves_png(cells[pos])):
            pos += 1             # behind cells already inserted there, and behind the run's own plotting cell
        if last is None:
            cells[pos:pos] = [note, setup]
            pos += 2
        cells.insert(pos, cell)
        last = pos
    if summary:
        if last is None:
            cells += [note, setup]
        cells.append(summary[1])
    executed.cells = cells
    nbformat.write(executed, path)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", type=Path, help="executed notebooks (default: results/*/*/0*.ipynb)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted(ROOT.glob("results/*/*/0*.ipynb"))
    commit = source_commit()
    for p in paths:
        out = render(p, args.timeout, commit)
        print(f"{out.relative_to(ROOT)}: {out.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    sys.exit(main())
