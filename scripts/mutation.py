"""Mutation testing of the core modules with mutmut: which small deliberate bugs do the unit tests catch?

    python scripts/mutation.py --out docs/mutation              # every group (tens of minutes on 2 cores)
    python scripts/mutation.py --groups losses metrics --out /tmp/mutation

Each group (a module and the test files that guard it, ``GROUPS``) runs in its own copy of the repository's
tracked files, with a ``[tool.mutmut]`` section naming the module and the tests: mutmut mutates the module one
change at a time (operators, constants, arguments, return values) and runs the tests that cover the mutated
function. Writes ``summary.csv`` (per group: mutants, killed, survived, timeouts, no tests, score) and
``survivors.txt`` (each surviving mutant's diff, for docs/testing.md to kill or explain). Score = killed /
(killed + survived): timeouts and mutants no test reaches are reported apart.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {   # test files, or pytest node ids (file::test)
    "losses": ("dasslib/losses.py", ["tests/test_losses.py"]),
    "metrics": ("dasslib/metrics.py", ["tests/test_metrics.py"]),
    "fbank": ("dasslib/data/fbank.py", ["tests/test_fbank.py", "tests/test_dass_lean.py"]),
    "datafile": ("dasslib/data/datafile.py", ["tests/test_datafile.py"]),
    "synth": ("dasslib/data/synth.py", ["tests/test_synth.py"]),
    "niah_data": ("dasslib/data/niah.py", ["tests/test_niah.py"]),
    "checkpoints": ("dasslib/models/checkpoints.py", ["tests/test_models_common.py", "tests/test_checkpoints.py"]),
    # of test_scan_triton (minutes under the Triton interpreter) only the test that calls the dispatcher
    "scans_api": ("dasslib/scans/api.py", ["tests/test_scans.py",
                                           "tests/test_scan_triton.py::test_selective_scan_dispatches_to_triton_"
                                           "with_every_argument"]),
    "scans_torch": ("dasslib/scans/torch_backend.py", ["tests/test_scans.py", "tests/test_scans_torch.py"]),
    "objectives": ("dasslib/train/objectives.py", ["tests/test_train.py", "tests/test_losses.py",
                                                   "tests/test_objectives.py"]),
    "train_checkpoint": ("dasslib/train/checkpoint.py", ["tests/test_train.py", "tests/test_reliability.py",
                                                         "tests/test_train_checkpoint.py"]),
    # with the tests of test_reliability that stop a run and resume it (the rest of that file trains too, slowly)
    "train_resume": ("dasslib/train/resume.py", ["tests/test_train.py", "tests/test_plateau.py",
                                                 "tests/test_train_resume.py"] + [
        f"tests/test_reliability.py::{t}" for t in (
            "test_an_exception_mid_epoch_saves_a_resumable_checkpoint",
            "test_resume_false_restarts_an_unfinished_run_of_the_same_settings",
            "test_skipped_clips_are_counted_across_workers_and_resumption",
            "test_overwritten_checkpoint_bytes_are_reported_with_the_file")]),
    "plateau": ("dasslib/train/plateau.py", ["tests/test_plateau.py"]),
    # tests/test_niah.py tests dasslib/data/niah.py (niah_data) and imports nothing of this module
    "niah_experiment": ("dasslib/experiments/niah.py", ["tests/test_niah_experiment.py",
                                                        "tests/test_results_views.py"] + [
        f"tests/test_reliability.py::{t}" for t in (
            "test_length_scaling_keeps_every_row_on_cpu", "test_niah_sweep_keeps_the_lengths_that_fit")]),
}
STATUS = re.compile(r"^\s*(\S+): (.+)$")


def _copy_tree(dest: Path) -> None:
    """The tracked files of the working tree (with uncommitted edits) into ``dest``."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if name and (ROOT / name).is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)


def run_group(name: str, module: str, tests: list[str], workdir: Path, children: int, multiplier: float) -> dict:
    """Mutate ``module`` against ``tests`` in a copy under ``workdir``; per-status counts and survivor diffs."""
    copy = workdir / name
    _copy_tree(copy)
    untracked = [path for path in [module, *tests] if not (copy / path.split("::")[0]).is_file()]
    if untracked:   # mutmut would report every mutant "no tests" and say nothing of why
        raise SystemExit(f"{name}: {untracked} not tracked by git (only tracked files are copied): git add them")
    # the whole package is copied into mutmut's tree (a lone module would leave its parents namespace
    # packages); every other module is excluded from mutation
    others = sorted(name for name in (str(p.relative_to(copy)) for p in (copy / "dasslib").rglob("*.py"))
                    if name != module)
    # mutmut runs the tests inside its own tree (mutants/), which holds only dasslib/ and tests/: the rest
    # (docs/, params/, ...) goes there too, for the tests that read the repository's files (test_scans reads
    # docs/scans.md; without it the stats run fails and every mutant is reported "no tests")
    also = sorted({p.name for p in copy.iterdir()} - {"dasslib", "tests", "pyproject.toml"})
    with open(copy / "pyproject.toml", "a") as f:
        f.write(f'\n[tool.mutmut]\nsource_paths = ["dasslib"]\ndo_not_mutate = {others!r}\nalso_copy = {also!r}\n'
                f"pytest_add_cli_args_test_selection = {tests!r}\n"
                f"timeout_multiplier = {multiplier}\n".replace("'", '"'))
    mutmut = [str(Path(sys.executable).with_name("mutmut"))]
    env = dict(os.environ, PYTHONPATH=str(copy), OMP_NUM_THREADS="1")
    subprocess.run(mutmut + ["run", "--max-children", str(children)], cwd=copy, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listing = subprocess.run(mutmut + ["results", "--all", "true"], cwd=copy, env=env, capture_output=True,
                             text=True).stdout
    statuses = {}
    for line in listing.splitlines():
        m = STATUS.match(line)
        if m and "__mutmut_" in m.group(1):
            statuses[m.group(1)] = m.group(2).strip()
    survivors = []
    for mutant, status in statuses.items():
        if status == "survived":
            diff = subprocess.run(mutmut + ["show", mutant], cwd=copy, env=env, capture_output=True, text=True).stdout
            survivors.append(diff.strip())
    counts = {s: list(statuses.values()).count(s) for s in set(statuses.values())}
    killed, survived = counts.get("killed", 0), counts.get("survived", 0)
    return dict(group=name, module=module, tests=" ".join(tests), mutants=len(statuses), killed=killed,
                survived=survived, timeout=counts.get("timeout", 0),
                no_tests=counts.get("no tests", 0) + counts.get("not checked", 0),
                score=round(killed / (killed + survived), 3) if killed + survived else None,
                survivors=survivors)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    ap.add_argument("--out", required=True, help="folder for summary.csv and survivors.txt")
    ap.add_argument("--children", type=int, default=2, help="mutants tested at a time")
    ap.add_argument("--timeout-multiplier", type=float, default=20.0,
                    help="a mutant times out after this many times its tests' normal duration")
    ap.add_argument("--keep", action="store_true", help="keep the working copies (in a printed folder)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="dasslib-mutation-"))
    rows = []
    try:
        for name in a.groups:
            module, tests = GROUPS[name]
            row = run_group(name, module, tests, workdir, a.children, a.timeout_multiplier)
            rows.append(row)
            print(f"{name}: {row['killed']} killed, {row['survived']} survived, {row['timeout']} timeouts, "
                  f"{row['no_tests']} untested of {row['mutants']} (score {row['score']})", flush=True)
            if row["mutants"] and row["no_tests"] == row["mutants"]:
                print(f"{name}: no mutant was tested: mutmut's first run of the tests (with -x) probably failed; "
                      "rerun with --keep and run `mutmut run` in the printed copy to see the error", flush=True)
            _write(rows, out)   # after every group: a long run cut short keeps what it finished
    finally:
        if a.keep:
            print("working copies in", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _write(rows: list, out: Path) -> None:
    """summary.csv and survivors.txt of the groups done so far."""
    from dasslib.atomic import atomic_write_text

    fields = ["group", "module", "tests", "mutants", "killed", "survived", "timeout", "no_tests", "score"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(buf.getvalue(), out / "summary.csv")
    text = "\n\n".join(f"## {row['group']} ({row['module']})\n\n" + "\n\n".join(row["survivors"])
                       for row in rows if row["survivors"])
    atomic_write_text(text + "\n", out / "survivors.txt")


if __name__ == "__main__":
    main()
