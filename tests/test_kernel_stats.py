"""scripts/kernel_stats.py compiles the scan kernels offline for sm_90 as a launch specializes them."""
import shutil

import pytest

from tests.compiled_env import needs_compiled, only_when_interpreted, run_compiled_in_fresh_process

ks = pytest.importorskip("scripts.kernel_stats")


@only_when_interpreted
def test_compiled_in_fresh_process():
    run_compiled_in_fresh_process(__file__)


def _have_tools():
    return (ks.BIN / "ptxas").is_file() and (ks.BIN / "nvdisasm").is_file() or shutil.which("ptxas")


pytestmark = pytest.mark.skipif(not _have_tools(), reason="Triton's bundled ptxas / nvdisasm not found")



def _stats(**kw):
    fn, consts, warps = ks.kernel_config("rows_bwd", N=1, z=0, block=256, **kw)
    return ks.stats(ks.compile_sm90(fn, consts, kw.get("dtype", "fp32"), warps, kw.get("L", 8192)))


@needs_compiled
def test_aligned_rows_load_16_byte_vectors():
    """L % 16 == 0 (DASS's 8192): pointers and L carry divisibility 16 as at launch, so bf16 tiles are
    read as 16-byte vectors (8 steps per lane) and no 2-byte element loads remain."""
    s = _stats(dtype="bf16", L=8192)
    assert s["global_memory"].get("LDG.E.128", 0) >= 3      # u, delta, dy (and B, C) tiles
    assert "LDG.E.U16" not in s["global_memory"]
    assert s["spill_store_bytes"] == 0 and s["registers"] <= 255


@needs_compiled
def test_unaligned_rows_load_elements():
    """L = 513 (AuM): a row's start is not 16-byte aligned, so the same kernel reads bf16 element by
    element: what an unaligned row stride costs (docs/speed.md)."""
    s = _stats(dtype="bf16", L=513)
    assert s["global_memory"].get("LDG.E.U16", 0) > 0
    assert "LDG.E.128" not in s["global_memory"]


@needs_compiled
def test_cli_prints_one_line_per_kernel(capsys):
    ks.main(["rows_fwd", "N=1", "dtype=bf16", "block=256", "BD=4", "z=0"])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("rows_fwd ") and '"registers"' in out[0]


@pytest.mark.parametrize("name,N,dtype,extra", [
    # the seq backward as the launcher runs it: the state loop (N > 4) in the Fo-Bi layout with an initial
    # state and the last state's gradient; unrolled states (N <= 4) with sums over 8 rows; SSAM's N = 24
    ("seq_bwd", 16, "bf16", dict(REV_UPPER=True, U_SRC=1, SHARED=True, HAS_H0=True, HAS_DLAST=True)),
    ("seq_bwd", 2, "fp32", dict(ROW_SUM=8, STATE_LOOP=False, HAS_Z=False)),
    ("seq_bwd", 24, "bf16", dict(ROW_SUM=1)),
    # the seq forward storing its states for the seq backward, Fo-Bi layout
    ("seq", 16, "bf16", dict(STATES_T=True, REV_UPPER=True, U_SRC=1, SHARED=True)),
    # the Bi-Bi layout: reversed upper half over its own rows (no shared sources)
    ("seq_bwd", 16, "bf16", dict(REV_UPPER=True)),
    ("seq", 16, "bf16", dict(STATES_T=True, REV_UPPER=True)),
    # bf16 B / C widened by a bit shift
    ("seq", 16, "bf16", dict(WIDEN=True)),
    # B / C offsets per program, two rows per thread, in the Fo-Bi layout
    ("seq", 16, "bf16", dict(UNIFORM=True, BD=64, WIDEN=True, REV_UPPER=True, U_SRC=1, SHARED=True)),
])
@needs_compiled
def test_seq_kernels_compile_for_sm90(name, N, dtype, extra):
    """Compiled Triton checks what the interpreter does not (e.g. every return of a helper has one type):
    the seq kernels compile for sm_90 in the configurations the launcher uses, without spills."""
    fn, consts, warps = ks.kernel_config(name, N=N, dtype=dtype, L=528)
    s = ks.stats(ks.compile_sm90(fn, {**consts, **extra}, dtype, warps, 528))
    assert s["registers"] <= 255 and s["instructions"] > 0
    assert 0 < s["loops"][0] < s["instructions"]        # the tile loop's body, inside the whole kernel
    if name == "seq_bwd":
        assert s["spill_store_bytes"] == 0
