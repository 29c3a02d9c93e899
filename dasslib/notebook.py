"""Notebook helpers: parameter validation for papermill runs, parameter files, output folders and
run metadata for result tables.

Papermill runs a notebook with new parameter values by inserting an ``injected-parameters`` cell
right after the cell tagged ``parameters``. A misspelt name would silently define a new variable and
a value of the wrong type would fail far away (or not at all), so the notebooks snapshot their
defaults at the end of the ``parameters`` cell and check what papermill injected in the next cell::

    # cell tagged "parameters"
    length = 60
    lr = 1e-4
    _defaults = dict(globals())  # snapshot of the defaults, before papermill's injected cell

    # first cell after it
    from dasslib.notebook import check_params
    P = check_params(globals(), _defaults)

Parameters are the snapshot's public names (no leading underscore) bound to plain values (bool, int,
float, str, None, list, tuple, dict); modules, functions and IPython's own names are ignored.
"""
from __future__ import annotations

import datetime
import difflib
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

from .atomic import atomic_write_json

_PLAIN = (bool, int, float, str, type(None), list, tuple, dict)
_IPYTHON = frozenset({"In", "Out", "exit", "quit", "get_ipython"})


def _is_param(name: str, value) -> bool:
    return not name.startswith("_") and name not in _IPYTHON and isinstance(value, _PLAIN)


def snapshot_params(namespace: Mapping) -> dict:
    """The parameter-like entries of ``namespace`` (e.g. ``globals()``), lists and dicts copied."""
    return {k: (type(v)(v) if isinstance(v, (list, dict)) else v) for k, v in namespace.items() if _is_param(k, v)}


class Params(Mapping):
    """Checked parameter values: a read-only mapping with attribute access (``P.lr``)."""

    def __init__(self, values: dict, defaults: dict):
        self._values, self._defaults = dict(values), dict(defaults)

    def __getitem__(self, name):
        return self._values[name]

    def __getattr__(self, name):
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(f"no parameter {name!r}") from None

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def changed(self) -> dict:
        """The parameters whose value differs from the default."""
        return {k: v for k, v in self._values.items() if v != self._defaults[k]}

    def to_dict(self) -> dict:
        return dict(self._values)

    def __repr__(self):
        return "Params(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"


def _type_name(value) -> str:
    return type(value).__name__


def _type_problem(default, value) -> str | None:
    """Why ``value`` cannot replace ``default`` (None when it can). Ints are accepted for floats, lists
    for tuples and tuples for lists; list/tuple elements are checked against a homogeneous default."""
    if default is None:
        return None
    if isinstance(default, bool) or isinstance(value, bool):
        return None if isinstance(default, bool) and isinstance(value, bool) else \
            f"expects {_type_name(default)}, got {_type_name(value)} {value!r}"
    if isinstance(default, float):
        if isinstance(value, (int, float)):
            return None
        hint = ""
        if isinstance(value, str):
            try:
                float(value)
                hint = " (YAML reads 1e-4 as a string: write 1.0e-4)"
            except ValueError:
                pass
        return f"expects float, got {_type_name(value)} {value!r}{hint}"
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            return f"expects a list, got {_type_name(value)} {value!r}"
        kinds = {type(d) for d in default}
        element = 0.0 if kinds == {int, float} else (default[0] if len(kinds) == 1 else None)
        for i, item in enumerate(value if element is not None else ()):
            problem = _type_problem(element, item)
            if problem:
                return f"item {i}: {problem}"
        return None
    if not isinstance(value, type(default)):
        return f"expects {_type_name(default)}, got {_type_name(value)} {value!r}"
    return None


def check_params(namespace: Mapping, defaults: Mapping, overrides: Mapping | None = None) -> Params:
    """Validate a notebook's parameters and return them as `Params`.

    ``namespace``: the notebook's ``globals()`` after papermill's injected cell; ``defaults``: the snapshot
    taken at the end of the ``parameters`` cell (``dict(globals())`` or `snapshot_params`); ``overrides``:
    optional values applied last (e.g. from `load_params_file`). Raises one ``ValueError`` that lists every
    unknown name (with close matches) and every ill-typed value.
    """
    base = snapshot_params(defaults)
    values = {name: namespace.get(name, default) for name, default in base.items()}
    injected = {k: v for k, v in namespace.items() if k not in defaults and _is_param(k, v)}
    candidates = {**injected, **dict(overrides or {})}
    problems = []
    for name, value in candidates.items():
        if name not in base:
            close = difflib.get_close_matches(name, list(base), n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            problems.append(f"unknown parameter {name!r}{hint}")
        else:
            values[name] = value
    for name, value in values.items():
        problem = _type_problem(base[name], value)
        if problem:
            problems.append(f"parameter {name!r} {problem}")
    if problems:
        known = ", ".join(sorted(base))
        raise ValueError("invalid notebook parameters:\n  " + "\n  ".join(problems) + f"\nknown parameters: {known}")
    return Params(values, base)


def params_path(profile: str, notebook: str, root: str | os.PathLike = "params") -> Path:
    """``root/<profile>/<notebook>.yaml`` (``notebook`` with or without ``.ipynb``)."""
    return Path(root) / profile / f"{Path(notebook).stem}.yaml"


def load_params_file(path: str | os.PathLike) -> dict:
    """Read a parameter file (a YAML mapping of names to values; an empty file is ``{}``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no parameter file at {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ValueError(f"{path}: a parameter file must be a mapping of names to values")
    return data


def output_dir(path: str | os.PathLike) -> Path:
    """Create (with parents) and return an output folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output path {path} exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _git(*args) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_metadata(dtype=None, device=None) -> dict:
    """Facts to store next to results: date (UTC), versions, device name, dtype, git commit (the
    ``DASSLIB_COMMIT`` environment variable when set: a copy of the tree run on another machine, whose
    ``.git``, if any, may be older than its files; else ``git rev-parse HEAD``).

    ``device``: a ``torch.device`` or string (default: the first CUDA device when available, else the CPU);
    ``dtype``: the compute dtype of the run (a ``torch.dtype`` or string), recorded as e.g. ``"bfloat16"``.
    """
    import torch

    import dasslib
    from dasslib.runtime import resolve_device

    device = resolve_device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    commit, dirty = os.environ.get("DASSLIB_COMMIT") or None, None
    if commit is None:
        commit = _git("rev-parse", "HEAD")
        dirty = None if commit is None else bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device_type": device.type,
        "device": name,
        "dtype": None if dtype is None else str(dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "dasslib": dasslib.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
    }


def save_run_metadata(out, dtype=None, device=None, **extra) -> dict:
    """:func:`run_metadata` plus ``extra`` facts of the run, also written to ``out/run_metadata.json``
    so the tables of a result folder say on what, when and from which commit they were made.
    Returns the dict."""
    meta = dict(run_metadata(dtype=dtype, device=device), **extra)
    atomic_write_json(meta, Path(out) / "run_metadata.json")
    return meta
