"""Compiled Triton for the tests that compile kernels (offline sm_90 counts, tests/test_kernel_stats.py).

Once an interpreter test file (tests/interpreter_env.py) has turned ``TRITON_INTERPRET`` on in a process, Triton
kernels there are interpreted and cannot be compiled; such a test file then runs itself in a fresh process
without it (``test_compiled_in_fresh_process`` calling :func:`run_compiled_in_fresh_process`), its other tests
carrying ``needs_compiled``. Importing this module changes nothing.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

COMPILED = os.environ.get("TRITON_INTERPRET") != "1"
needs_compiled = pytest.mark.skipif(not COMPILED, reason="triton's interpreter is on in this process; these run "
                                                          "in test_compiled_in_fresh_process")
only_when_interpreted = pytest.mark.skipif(COMPILED, reason="runs only where triton's interpreter is on")


def run_compiled_in_fresh_process(test_file):
    """Run ``test_file`` with pytest in a new process without the interpreter (tests that compile Triton
    kernels, e.g. for sm_90 offline, after an interpreter test file turned it on in this one)."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(Path(test_file).resolve())], env=env, cwd=root,
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
