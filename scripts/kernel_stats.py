"""Registers, spills and SASS instruction counts of the Triton scan kernels, compiled offline for sm_90.

No GPU is needed: Triton compiles for a target given by hand (``GPUTarget("cuda", 90, 32)``) and the
``ptxas`` / ``nvdisasm`` that ship with Triton report registers, spill stores and the instructions. This is
how docs/scans.md and docs/speed.md count before timing (registers per thread set how many warps an SM
keeps resident; spill stores go to local memory in the inner loop).

    python -m scripts.kernel_stats rows_bwd N=16 dtype=bf16        # AuM-like backward
    python -m scripts.kernel_stats rows_fwd N=24                   # SSAM-like forward
    python -m scripts.kernel_stats seq N=16 rows_bwd N=1 z=0       # several, each with its keywords
    python -m scripts.kernel_stats seq_bwd N=16 dtype=bf16 L=528   # the sequential backward (row_sum=0: atomics)

Each kernel is compiled with time-varying B/C, D, delta_bias, softplus and (unless ``z=0``) the gate, as
the models call it; keywords: N, dtype (fp32, bf16), BD (rows per program), warps, block (tile steps),
prefetch, L (sequence length: alignment only; 8192 as DASS's, 513 as AuM's unaligned rows), bc (the
sequential kernel's B / C prefetch, 0 or 1), widen (its bf16 B / C widened by a bit shift, 0 or 1), uniform
(its B / C offsets per program, 0 or 1; with BD=64 two rows per thread), maxnreg (a register cap, as
``TritonConfig.seq_maxnreg`` / ``bwd_maxnreg`` give a launch).
Counts differ between Triton versions (the GPU machine's may not be this one's).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from dasslib.scans import seq_kernels as S
from dasslib.scans import triton_kernels as K

BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
INPUTS = ("u_ptr", "dt_ptr", "B_ptr", "C_ptr", "z_ptr", "dy_ptr", "y_ptr", "du_ptr", "ddt_ptr", "dz_ptr")
# (the seq backward's dimensions that a launch specializes as 16-divisible: rows, n_tiles and the group counts
# are not specialized; dim and L as for the other kernels)
COMMON = dict(B_VARYING=True, C_VARYING=True, HAS_D=True, HAS_DTB=True, SOFTPLUS=True, HAS_H0=False,
              FAST_LOG=True)


def compile_sm90(fn, constexprs: dict, dtype: str, num_warps: int, L: int = 8192, maxnreg: int = 0):
    """``fn`` compiled for sm_90: pointers of the inputs/outputs in ``dtype``, the rest fp32, ints i32.

    Specialized as a launch specializes it: pointers (torch allocations) and the ints that are not
    ``do_not_specialize`` and divisible by 16 at that launch (``dim``, the sequential kernel's
    ``chunk_len``, and ``L`` when ``L % 16 == 0``)
    carry ``tt.divisibility = 16``. Without it Triton cannot prove alignment and loads 2-byte bf16
    elements one by one (1-element layouts) instead of 16-byte vectors: the counts would not be the
    launched kernel's."""
    ptr = "*fp32" if dtype == "fp32" else "*bf16"
    sig = {p.name: "constexpr" if p.is_constexpr else (ptr if p.name in INPUTS else "*fp32")
           if p.name.endswith("_ptr") else "i32" for p in fn.params}
    aligned = {"dim", "chunk_len"} | ({"L"} if L % 16 == 0 else set())   # chunk_len: a multiple of the tile
    attrs = {(i,): [["tt.divisibility", 16]] for i, p in enumerate(fn.params)
             if not p.is_constexpr and (p.name.endswith("_ptr") or p.name in aligned)}
    src = ASTSource(fn, sig, constexprs=constexprs, attrs=attrs)
    options = dict(num_warps=num_warps, **({"maxnreg": maxnreg} if maxnreg else {}))   # a launch's register cap
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)


def stats(kernel) -> dict:
    """Registers and spill-store bytes (ptxas -v), SASS instruction count, the largest loop bodies'
    instruction counts (:func:`_loop_sizes`) and the most frequent opcodes."""
    with tempfile.TemporaryDirectory() as tmp:
        ptx, cubin = Path(tmp) / "k.ptx", Path(tmp) / "k.cubin"
        ptx.write_text(kernel.asm["ptx"])
        cubin.write_bytes(kernel.asm["cubin"])
        report = subprocess.run([str(BIN / "ptxas"), "--gpu-name", "sm_90a", "-v", str(ptx), "-o",
                                 str(Path(tmp) / "out.cubin")], capture_output=True, text=True)
        sass = subprocess.run([str(BIN / "nvdisasm"), "-c", str(cubin)], capture_output=True, text=True).stdout
    text = report.stdout + report.stderr
    lines = [ln for ln in sass.splitlines() if re.match(r"\s+/\*[0-9a-f]{4,}\*/", ln)]
    ops: dict[str, int] = {}
    for ln in lines:
        m = re.search(r"\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", ln)
        if m:
            op = m.group(1).split(".")[0]
            ops[op] = ops.get(op, 0) + 1
    widths: dict[str, int] = {}    # global loads / stores by width (LDG.E.128: 16-byte vectors)
    for ln in lines:
        m = re.search(r"\b((?:LDG|STG)\.E(?:\.\w+)*)", ln)
        if m:
            widths[m.group(1)] = widths.get(m.group(1), 0) + 1
    loops = _loop_sizes(sass.splitlines())
    regs = re.findall(r"Used (\d+) registers", text)
    spills = re.findall(r"(\d+) bytes spill stores", text)
    return dict(registers=int(regs[0]) if regs else None, spill_store_bytes=int(spills[0]) if spills else None,
                instructions=len(lines), loops=loops, global_memory=dict(sorted(widths.items())),
                top_ops=dict(sorted(ops.items(), key=lambda kv: -kv[1])[:12]))


def _loop_sizes(sass_lines, most=3):
    """Instruction counts of the SASS loop bodies (from a label to a branch back to it, nested loops
    counted inside their outer one), the largest ``most`` first: the per-iteration cost of a kernel's
    tile loop and, for the backwards, of their state loop."""
    labels = {ln.strip().rstrip(":"): i for i, ln in enumerate(sass_lines) if ln.strip().startswith(".L")}
    sizes = []
    for i, ln in enumerate(sass_lines):
        m = re.search(r"BRA `\((\.L_x_\d+)\)", ln)
        if m and labels.get(m.group(1), i) < i:
            body = sass_lines[labels[m.group(1)]:i + 1]
            sizes.append(sum(1 for x in body if re.match(r"\s+/\*[0-9a-f]{4,}\*/", x)))
    return sorted(sizes, reverse=True)[:most]


def kernel_config(name: str, N=16, dtype="fp32", BD=None, warps=None, block=128, prefetch=1, z=1, L=8192, bc=0,
                  row_sum=32, widen=0, uniform=0):
    """(kernel, constexprs, num_warps) of one of the scan kernels as the models launch it."""
    NP = triton.next_power_of_2(N)
    if name == "rows_bwd":
        BD = BD or 1
        consts = dict(N=N, NP=NP, BD=BD, BLOCK_L=block, HAS_Z=bool(z), HAS_DLAST=False, CHUNKED=False,
                      PREFETCH=bool(prefetch), PREFETCH_BC=prefetch >= 2 and N == 1, REV_UPPER=False, U_SRC=0,
                      SHARED=False, **COMMON)
        return K._rows_bwd_kernel, consts, warps or 1
    if name == "rows_fwd":
        BD = BD or 4
        consts = dict(N=N, NP=NP, BD=BD, BLOCK_L=block, STATE_EVERY=1, HAS_Z=bool(z), PREFETCH=prefetch,
                      CHUNKED=False, REV_UPPER=False, U_SRC=0, SHARED=False, CARRY_IN_SCAN=True, DT_R=0,
                      **COMMON)
        return K._rows_fwd_kernel, consts, warps or BD
    if name == "seq":
        consts = dict(N=N, NP=NP, BD=BD or 32, STATE_EVERY=32, HAS_Z=bool(z), PASS=2, PREFETCH=prefetch,
                      REV_UPPER=False, U_SRC=0, SHARED=False, BC_PREFETCH=bool(bc), WIDEN=bool(widen),
                      UNIFORM=bool(uniform), **COMMON)
        return S._seq_fwd_kernel, consts, warps or 1
    if name == "seq_bwd":
        consts = dict(N=N, NP=NP, BD=32, HAS_Z=bool(z), HAS_DLAST=False, REV_UPPER=False, U_SRC=0, SHARED=False,
                      ROW_SUM=row_sum, STATE_LOOP=N > 4,
                      **{k: v for k, v in COMMON.items() if k not in ("B_VARYING", "C_VARYING")})
        return S._seq_bwd_kernel, consts, warps or 1
    raise ValueError(f"unknown kernel {name!r}; choose rows_bwd, rows_fwd, seq or seq_bwd")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("spec", nargs="+", help="kernel names (rows_bwd, rows_fwd, seq), each followed by key=value")
    args = ap.parse_args(argv)
    jobs, current = [], None
    for item in args.spec:
        if "=" in item:
            if current is None:
                ap.error(f"{item!r} before a kernel name")
            key, value = item.split("=", 1)
            current[1][key] = value if key == "dtype" else int(value)
        else:
            current = (item, {})
            jobs.append(current)
    for name, kw in jobs:
        fn, consts, warps = kernel_config(name, **{k: v for k, v in kw.items() if k != "maxnreg"})
        kernel = compile_sm90(fn, consts, kw.get("dtype", "fp32"), warps, kw.get("L", 8192), kw.get("maxnreg", 0))
        print(name, json.dumps(kw), json.dumps(stats(kernel)),
              flush=True)


if __name__ == "__main__":
    main()
