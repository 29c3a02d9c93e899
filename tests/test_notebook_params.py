"""dasslib.notebook: parameter checking (in a namespace and through a real papermill run), parameter
files, output folders, run metadata."""
import os
import sys
from pathlib import Path

import pytest

from dasslib.notebook import (
    Params,
    check_params,
    load_params_file,
    output_dir,
    params_path,
    run_metadata,
    save_run_metadata,
    snapshot_params,
)

DEFAULTS = dict(length=60, lr=1e-4, name="dass_small", use_kd=True, sizes=[1, 2], gains=(0.5, 1), seed=None,
                extra={"a": 1})


def notebook_namespace(**injected):
    """A namespace as the check cell sees it: setup names, defaults snapshot, then injected values."""
    ns = {"os": os, "In": [""], "Out": {}, "_": None, "check_params": check_params}
    ns.update(DEFAULTS)
    snapshot = dict(ns)
    ns.update(injected)
    return ns, snapshot


def test_defaults_pass_and_ignore_non_parameters():
    ns, snap = notebook_namespace()
    p = check_params(ns, snap)
    assert isinstance(p, Params) and dict(p) == DEFAULTS
    assert p.length == 60 and p["name"] == "dass_small" and p.changed() == {}
    with pytest.raises(AttributeError, match="nope"):
        p.nope


def test_injected_values_are_accepted_and_reported_as_changed():
    ns, snap = notebook_namespace(length=120, lr=3, sizes=(4,), gains=[2, 0.25], seed=7)
    p = check_params(ns, snap)
    assert p.changed() == {"length": 120, "lr": 3, "sizes": (4,), "gains": [2, 0.25], "seed": 7}


def test_unknown_names_get_suggestions():
    ns, snap = notebook_namespace(lenght=120, totally_new=1)
    with pytest.raises(ValueError) as err:
        check_params(ns, snap)
    msg = str(err.value)
    assert "unknown parameter 'lenght' (did you mean 'length'?)" in msg
    assert "unknown parameter 'totally_new'" in msg and "known parameters: extra, gains, length" in msg


@pytest.mark.parametrize("name, value, fragment", [
    ("length", "60", "'length' expects int, got str '60'"),
    ("length", 60.0, "'length' expects int, got float"),
    ("length", True, "'length' expects int, got bool"),
    ("use_kd", 1, "'use_kd' expects bool, got int"),
    ("lr", "1e-4", "write 1.0e-4"),
    ("name", 3, "'name' expects str, got int"),
    ("sizes", [1, "2"], "'sizes' item 1: expects int, got str"),
    ("sizes", 3, "'sizes' expects a list, got int"),
    ("gains", [1, "x"], "'gains' item 1: expects float, got str"),
    ("extra", [1], "'extra' expects dict, got list"),
])
def test_ill_typed_values(name, value, fragment):
    ns, snap = notebook_namespace(**{name: value})
    with pytest.raises(ValueError, match="invalid notebook parameters") as err:
        check_params(ns, snap)
    assert fragment in str(err.value)


def test_all_problems_reported_at_once_and_overrides_checked():
    ns, snap = notebook_namespace(length="x", lenght=1)
    with pytest.raises(ValueError) as err:
        check_params(ns, snap, overrides={"name": 5})
    msg = str(err.value)
    assert "'lenght'" in msg and "'length' expects int" in msg and "'name' expects str" in msg
    ns, snap = notebook_namespace()
    assert check_params(ns, snap, overrides={"length": 5}).length == 5


def test_snapshot_params_copies_mutables():
    ns = {"a": [1], "b": {"x": 1}, "m": os, "_hidden": 1, "In": []}
    snap = snapshot_params(ns)
    assert snap == {"a": [1], "b": {"x": 1}} and snap["a"] is not ns["a"]


def test_params_files(tmp_path):
    path = params_path("ci", "01_train.ipynb", root=tmp_path)
    assert path == tmp_path / "ci" / "01_train.yaml"
    path.parent.mkdir()
    path.write_text("length: 60\nlr: 1.0e-4\nsizes: [1, 2]\n")
    assert load_params_file(path) == {"length": 60, "lr": 1e-4, "sizes": [1, 2]}
    (tmp_path / "empty.yaml").write_text("")
    assert load_params_file(tmp_path / "empty.yaml") == {}
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="list.yaml"):
        load_params_file(tmp_path / "list.yaml")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_params_file(tmp_path / "missing.yaml")


def test_output_dir(tmp_path):
    out = output_dir(tmp_path / "a" / "b")
    assert out.is_dir() and output_dir(out) == out
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        output_dir(tmp_path / "f")


def test_run_metadata():
    import torch

    meta = run_metadata(dtype=torch.bfloat16, device="cpu")
    assert meta["device_type"] == "cpu" and meta["dtype"] == "bfloat16" and meta["torch"] == torch.__version__
    assert meta["device"] and meta["date"].endswith("+00:00")
    assert meta["git_commit"] is None or len(meta["git_commit"]) == 40


def test_run_metadata_outside_git_takes_the_commit_from_the_environment(monkeypatch):
    import dasslib.notebook as nb

    monkeypatch.setattr(nb, "_git", lambda *args: None)          # a copy of the tree without .git
    monkeypatch.setenv("DASSLIB_COMMIT", "abc1234")
    assert nb.run_metadata(device="cpu")["git_commit"] == "abc1234"
    monkeypatch.delenv("DASSLIB_COMMIT")
    assert nb.run_metadata(device="cpu")["git_commit"] is None


def test_the_environment_commit_wins_over_a_stale_git(monkeypatch):
    """A tree copied to another machine may carry an older .git: DASSLIB_COMMIT names the files' commit."""
    import dasslib.notebook as nb

    monkeypatch.setattr(nb, "_git", lambda *args: "0" * 40)
    monkeypatch.setenv("DASSLIB_COMMIT", "abc1234")
    meta = nb.run_metadata(device="cpu")
    assert meta["git_commit"] == "abc1234" and meta["git_dirty"] is None


def test_save_run_metadata_writes_json(tmp_path):
    import json

    meta = save_run_metadata(tmp_path, device="cpu")
    assert json.loads((tmp_path / "run_metadata.json").read_text()) == meta
    assert meta["device_type"] == "cpu"


def _notebook(path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("length = 60\nlr = 1e-4\n_defaults = dict(globals())")
    params.metadata["tags"] = ["parameters"]
    check = nbformat.v4.new_code_cell("from dasslib.notebook import check_params\n"
                                      "P = check_params(globals(), _defaults)\nprint('length', P.length)")
    nb.cells = [nbformat.v4.new_code_cell("import os"), params, check]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_papermill_run_accepts_good_and_rejects_misspelt_parameters(tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    repo = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    src = _notebook(tmp_path / "nb.ipynb")
    out = papermill.execute_notebook(str(src), str(tmp_path / "ok.ipynb"), parameters={"length": 120},
                                     progress_bar=False, cwd=str(tmp_path))
    assert "length 120" in "".join(o.get("text", "") for o in out.cells[-1].outputs)
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(str(src), str(tmp_path / "bad.ipynb"), parameters={"lenght": 120},
                                   progress_bar=False, cwd=str(tmp_path))
    assert "did you mean 'length'" in str(err.value)
