"""Triton's interpreter for the CPU tests of the Triton kernels.

Importing this module before torch turns the interpreter on (``TRITON_INTERPRET=1``) when triton has
not been imported yet in this process; the interpreter must be on before triton's first import (torch
imports it too, e.g. through dasslib.models). In a process where that already happened without it (a
full test run), such a test file runs itself in a fresh subprocess instead: its
``test_in_fresh_process`` calls :func:`run_in_fresh_process`, and its other tests carry
``needs_fresh``.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

FRESH = os.environ.get("TRITON_INTERPRET") == "1" or "triton" not in sys.modules
if FRESH:
    os.environ["TRITON_INTERPRET"] = "1"

needs_fresh = pytest.mark.skipif(not FRESH, reason="triton was imported without the interpreter; "
                                                   "these run in test_in_fresh_process")
only_in_a_shared_process = pytest.mark.skipif(
    FRESH, reason="runs only where triton was imported without the interpreter")


def run_in_fresh_process(test_file):
    """Run ``test_file`` with pytest in a new interpreter-mode process; fail with its output."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(Path(test_file).resolve())], env=env, cwd=root,
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]

