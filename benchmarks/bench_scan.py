"""Benchmark of the selective-scan backends (GPU), with correctness checks first.

    python -m benchmarks.bench_scan --csv scan_bench.csv --log scan_bench.log [--tune]
                                    [--budget-s 210] [--case-cap-s 30] [--shapes dass,long,aum]
    TRITON_INTERPRET=1 python -m benchmarks.bench_scan --smoke     # CPU check of this script

Shapes (forward arguments as the models use them: D, delta_bias, delta_softplus=True):
  dass  batch 12, dim 4*192=768,  L 8192,   N 1,  B/C (batch, 4, N, L) (4 SS2D directions)
  long  batch 1,  dim 768,        L 524288, N 16, B/C (batch, 1, N, L)
  dass_long  batch 1, dim 4*192=768, L 524288, N 1, B/C (batch, 4, N, L): the DASS stage of
        "dass" at batch 1 and 2^19 tokens (~44 min of audio for DASS-Small)
  dass_long_s1  batch 1, dim 4*96=384, L 2097152, N 1, B/C (batch, 4, N, L): the stage before
        it on the same audio (4x the tokens, half the channels)
  aum   batch 12, dim 1536,       L 513,    N 16, B/C (batch, 1, N, L), gate z
inputs u, delta, z, B, C in fp32 or bf16; A, D, delta_bias fp32.

Minimum bytes (each input read once, each output written once; s = input element size):
  forward:  s * (batch*dim*L * (2 + has_z)  [u, delta, z]
                 + 2 * batch*G*N*L           [B, C]
                 + batch*dim*L)              [y]
            + 4 * (dim*N + 2*dim)            [A, D, delta_bias]
  backward: reads u, delta, z, B, C, dy, A, D, delta_bias; writes du, ddelta, dz, dB, dC
            (input dtype) and dA, dD, ddelta_bias (fp32):
            s * (batch*dim*L * (3 + 2*has_z + 2) + 4 * batch*G*N*L) + 8 * (dim*N + 2*dim)
  fwd+bwd counts forward + backward.
GB/s = bytes / median time; "% copy" compares with the device-to-device copy bandwidth measured
in the same run (a 2 GiB torch copy, counting bytes read + written).
Times are medians over repeated runs after warm-up (CUDA events). Each call is timed as a user calls it
(mode "fwd", "fwd+bwd": the host's work per call included, which shows where a call's kernels are shorter
than the Python, dispatch and launches around them) and, for the default configs and mamba-ssm, replayed
as a CUDA graph (modes "fwd graph", "fwd+bwd graph": the kernels alone, as a compiled or graph-replayed
model runs them). The kernel-against-kernel comparison is the graph rows.

Order of work (most important first, so that the time budget cuts the least important):
copy bandwidth; correctness of the default config of every shape and dtype (fwd + all grads
against a float64 reference, at the timed config on a smaller batch / length); default forward
timings; default forward+backward timings; --tune forward variants (each also compared with the
default's output); torch baselines. Every CSV row is written (and flushed) as soon as it is
measured. When the overall budget (--budget-s) is spent, the remaining cases are skipped with a
note in the log; one case stops repeating once it has used --case-cap-s. The torch backend is
skipped where one call would take seconds (the long shape).
"""
import argparse
import csv
import datetime
import json
import math
import os
import sys
import time

import torch

from dasslib.bench.timing import kernel_ms
from dasslib.cuda_graph import capture
from dasslib.scans.torch_backend import selective_scan_torch
from dasslib.scans.triton_backend import pick_config, selective_scan_triton

SHAPES = {
    "dass": dict(batch=12, dim=768, L=8192, N=1, G=4, z=False),
    "long": dict(batch=1, dim=768, L=524288, N=16, G=1, z=False),
    "aum": dict(batch=12, dim=1536, L=513, N=16, G=1, z=True),
    "dass_long": dict(batch=1, dim=768, L=524288, N=1, G=4, z=False),
    "dass_long_s1": dict(batch=1, dim=384, L=2097152, N=1, G=4, z=False),
    # the scans of the models as they call them: AuM-Base Fo-Bi at B=32 (both directions folded
    # into the channels, B/C one group each) and SSAM-Base at B=32 (1000 x 80 input)
    "aum_model": dict(batch=32, dim=3072, L=513, N=16, G=2, z=True),
    "ssam_model": dict(batch=32, dim=2304, L=801, N=24, G=1, z=True),
    # the same as the compiled models call them: the sequence padded to a multiple of 16 (MambaMixer.scan_pad)
    "aum_model_pad": dict(batch=32, dim=3072, L=528, N=16, G=2, z=True),
    "ssam_model_pad": dict(batch=32, dim=2304, L=816, N=24, G=1, z=True),
}
# the correctness check runs the timed config on these (smaller) sizes; lengths keep the
# divisibility of the timed ones, so the compiled kernels are shared with the timings
CHECK_SIZES = {"dass": dict(batch=2), "long": dict(L=65536), "aum": dict(batch=2),
               "dass_long": dict(L=65536), "dass_long_s1": dict(L=65536), "aum_model": dict(batch=2),
               "ssam_model": dict(batch=2), "aum_model_pad": dict(batch=2), "ssam_model_pad": dict(batch=2)}
SMOKE_SHAPES = {
    "dass": dict(batch=2, dim=16, L=40, N=1, G=4, z=False),
    "long": dict(batch=1, dim=8, L=300, N=3, G=1, z=False),
    "aum": dict(batch=2, dim=16, L=13, N=4, G=1, z=True),
    "dass_long": dict(batch=1, dim=8, L=300, N=1, G=4, z=False),
    "dass_long_s1": dict(batch=1, dim=4, L=600, N=1, G=4, z=False),
    "aum_model": dict(batch=2, dim=16, L=13, N=5, G=2, z=True),
    "ssam_model": dict(batch=2, dim=8, L=21, N=6, G=1, z=True),
    "aum_model_pad": dict(batch=2, dim=16, L=16, N=5, G=2, z=True),
    "ssam_model_pad": dict(batch=2, dim=8, L=32, N=6, G=1, z=True),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# torch backend: skipped when one forward call would process more than this many state
# elements (batch*dim*L*N; ~5e9 per second on an H100, several times that with backward)
TORCH_MAX_ELEMS = 1 << 30
WARM_S = 0.3
CSV_FIELDS = ["shape", "batch", "dim", "L", "N", "groups", "z", "dtype", "backend", "variant",
              "mode", "ms", "min_bytes", "GBps", "pct_copy", "peak_MiB", "reps"]


def make_inputs(shape, dtype, device, seed=0, requires_grad=False):
    """Random scan arguments like a trained model's (A = -exp(N(0,1)), delta ~ N(-1, 1) before
    softplus); list [u, delta, A, B, C, D, z, delta_bias]. Generated on ``device``."""
    g = torch.Generator(device=device).manual_seed(seed)
    b, d, L, N, G = shape["batch"], shape["dim"], shape["L"], shape["N"], shape["G"]

    def r(*s, scale=1.0, shift=0.0, dt=dtype):
        return (torch.randn(*s, generator=g, device=device) * scale + shift).to(dt)

    ins = [r(b, d, L), r(b, d, L, shift=-1.0), -torch.exp(r(d, N, dt=torch.float32)),
           r(b, G, N, L), r(b, G, N, L), r(d, dt=torch.float32),
           r(b, d, L) if shape["z"] else None, r(d, scale=0.5, dt=torch.float32)]
    if requires_grad:
        for t in ins:
            if t is not None:
                t.requires_grad_(True)
    return ins


def min_bytes(shape, dtype, with_bwd):
    s = torch.finfo(dtype).bits // 8
    b, d, L, N, G, z = (shape[k] for k in ("batch", "dim", "L", "N", "G", "z"))
    fwd = s * (b * d * L * (2 + z) + 2 * b * G * N * L + b * d * L) + 4 * (d * N + 2 * d)
    bwd = s * (b * d * L * (3 + 2 * z + 2) + 4 * b * G * N * L) + 8 * (d * N + 2 * d)
    return fwd + (bwd if with_bwd else 0)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, budget_s=0.3, cap_s=30.0):
    """(median ms, calls timed) of fn(): `dasslib.bench.kernel_ms` (on the GPU triton's do_bench, the L2 cache
    flushed before each call, after >= WARM_S of warm-up: the first case after a pause ran up to 20% slower
    on the H100, DASS forward 0.566 ms then 0.486 and 0.485 ms in the same process), within cap_s."""
    budget_ms = 1e3 * max(0.01, min(budget_s, cap_s / 3))
    ms = kernel_ms(fn, device, budget_ms=budget_ms, warmup_ms=1e3 * min(WARM_S, cap_s / 3))
    return ms, max(1, int(budget_ms / max(ms, 1e-3))) if device.type == "cuda" else 1


def peak_mb(fn, device):
    if device.type != "cuda":
        return float("nan")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def copy_bandwidth(device, log):
    """Device-to-device copy GB/s, counting bytes read + written."""
    if device.type != "cuda":
        return float("nan")
    n = 2**29                                    # 2 GiB of fp32
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    ms, _ = timed(lambda: dst.copy_(src), device, budget_s=1.0)
    gbps = 2 * 4 * n / ms / 1e6
    log(f"copy: {2 * 4 * n / 2**30:.1f} GiB moved in {ms:.3f} ms -> {gbps:.0f} GB/s")
    del src, dst
    torch.cuda.empty_cache()
    return gbps


MAMBA = None   # mamba-ssm's compiled selective_scan_cuda module, when importable (--mamba-ext)


def load_mamba(ext_dir):
    """mamba-ssm's ``selective_scan_cuda`` (built by scripts/build_mamba_scan.py into
    ``ext_dir``, or installed with mamba-ssm), or None."""
    if ext_dir:
        sys.path.insert(0, ext_dir)
    try:
        import selective_scan_cuda
    except ImportError:
        return None
    return selective_scan_cuda


class _MambaScan(torch.autograd.Function):
    """mamba-ssm's kernels called directly (as its SelectiveScanFn does, minus the Python
    checks): forward saves the chunk states x, backward recomputes from them."""

    @staticmethod
    def forward(ctx, u, dt, A, B, C, D, z, dtb):
        out, x, *rest = MAMBA.fwd(u, dt, A, B, C, D, z, dtb, True)
        ctx.save_for_backward(u, dt, A, B, C, D, z, dtb, x, out)
        return out if z is None else rest[0]

    @staticmethod
    def backward(ctx, dy):
        u, dt, A, B, C, D, z, dtb, x, out = ctx.saved_tensors
        g = MAMBA.bwd(u, dt, A, B, C, D, z, dtb, dy.contiguous(), x, out, None, True, False)
        du, ddt, dA, dB, dC, dD, ddtb = g[:7]
        dz = g[7] if z is not None else None
        return du, ddt, dA, dB, dC, dD, dz, ddtb


def scan_call(backend, ins, variant=None):
    u, dt, A, B, C, D, z, dtb = ins
    kw = dict(D=D, z=z, delta_bias=dtb, delta_softplus=True)
    if backend == "torch":
        return selective_scan_torch(u, dt, A, B, C, **kw)
    if backend == "mamba":
        return _MambaScan.apply(u, dt, A, B, C, D, z, dtb)
    return selective_scan_triton(u, dt, A, B, C, **kw, **(variant or {}))


def graphed(fn, device):
    """``fn`` captured as one CUDA graph (:func:`dasslib.cuda_graph.capture`), returned as its replay: the same
    kernels without the host's work per call (Python, the custom op's dispatch, the launchers, allocations),
    so that two backends compare kernel against kernel. On the CPU: ``fn``."""
    if torch.device(device).type != "cuda":
        return fn
    graph, _ = capture(fn, warmup=3, device=device)
    return graph.replay


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300)).item()


def default_config(shape, device, smoke=False):
    """pick_config of the timed shape, as a dict of overrides (the check uses it on smaller
    sizes, so it checks exactly the kernels that are timed). --smoke (CPU) takes the CUDA
    decisions of a 2-SM device, so that the tiny shapes go through the GPU code paths."""
    from dataclasses import asdict
    return asdict(pick_config(shape["batch"] * shape["dim"], shape["L"], shape["N"], device,
                              sms=2 if smoke else None))


def unchunked(cfg):
    """The config without chained chunks (None if cfg has none): the consistency reference."""
    if cfg["fwd"] == "rows" and (cfg["rows_chunks"] > 1 or cfg["bwd_chunks"] > 1):
        return dict(cfg, rows_chunks=1, bwd_chunks=1)
    if cfg["fwd"] == "seq" and cfg["n_chunks"] > 1:
        return dict(cfg, n_chunks=1)
    return None


def describe(cfg):
    if cfg["fwd"] == "rows":
        return (f"rows r{cfg['rows']} w{cfg['rows_warps']} p{cfg['prefetch']} c{cfg['rows_chunks']}"
                + (f" bl{cfg['rows_block']}" if cfg["rows_block"] else "")
                + (f" v{cfg['rows_vec']}" if cfg["rows_vec"] != 1 and not cfg["rows_block"] else "")
                + ("" if cfg.get("rows_carry_in_scan", True) else " cout"))
    if cfg["fwd"] == "seq":
        return (f"seq w{cfg['seq_warps']} c{cfg['n_chunks']} p{cfg['prefetch']}"
                + (f" s{cfg['seq_stages']}" if cfg.get("seq_stages") else "")
                + (" bc" if cfg.get("seq_bc_prefetch") else "")
                + (" wd" if cfg.get("seq_widen") else "")
                + (" un" if cfg.get("seq_uniform") else "")
                + (f" tr{cfg['seq_thread_rows']}" if cfg.get("seq_thread_rows", 1) != 1 else "")
                + (f" mr{cfg['seq_maxnreg']}" if cfg.get("seq_maxnreg") else ""))
    return f"scan bl{cfg['block_l']} w{cfg['num_warps']} ch{int(cfg['chained'])}"


def describe_bwd(cfg):
    if cfg["fwd"] == "seq" and cfg["bwd"] == "seq":
        return ("fwd seq bwd seq" + f" rs{cfg.get('bwd_row_sum', 32)}"
                + (f" mr{cfg['bwd_maxnreg']}" if cfg.get("bwd_maxnreg") else ""))
    if cfg["fwd"] != "scan" and cfg["bwd"] == "rows":
        seq = "fwd seq " if cfg["fwd"] == "seq" else ""
        return (seq + f"bwd rows r{cfg['bwd_rows']} w{cfg['bwd_warps']} p{cfg['bwd_prefetch']} "
                f"c{cfg['bwd_chunks']}" + (f" bl{cfg['rows_block']}" if cfg["rows_block"] else "")
                + (f" mr{cfg['bwd_maxnreg']}" if cfg.get("bwd_maxnreg") else "")
                + (" spread" if cfg.get("bwd_spread") else ""))
    return f"bwd scan bl{cfg['block_l']} w{cfg['num_warps']} ch{int(cfg['chained'])}"


def tune_bwd_variants(name, cfg):
    """(label, config) of the backward variants timed (forward+backward) with --tune."""
    def v(**kw):
        c = dict(cfg, **kw)
        return describe_bwd(c), c
    out = []
    if name == "dass":
        # beside the default (one chunk, spread row blocks): launch order, chained chunks; more rows per
        # program (fewer same-address atomics on dB / dC: a B/C group's 192 channels add into one row of
        # them, more bytes in flight per program); a register cap (more warps per SM)
        out = [v(bwd_spread=False), v(bwd_chunks=4),
               v(bwd_prefetch=2), v(bwd_maxnreg=128), v(bwd_rows=2), v(bwd_rows=4),
               v(bwd_rows=2, bwd_maxnreg=128),
               v(bwd_prefetch=0), v(bwd="scan")]
    elif name in ("aum", "aum_model", "aum_model_pad"):
        # one row per one-warp program adds every state-step's dB / dC atomically (2 per row and
        # state-step, every channel of a B / C group into the same addresses); BD rows per program
        # sum them over the rows first (BD times fewer atomics): a warp per row with the row sum
        # through shared memory (bwd_warps = BD), or BD rows in one warp on shorter tiles (a
        # rows_block with 2-byte inputs halves bwd_rows: 8 -> 4 rows of 32 steps, 16 -> 8 of 16).
        # The "seq" backward: a thread per row (no shuffle scans), dB / dC summed over 32 or 8 of the warp's
        # rows or added per row
        out = [v(bwd="seq"), v(bwd="seq", bwd_row_sum=8), v(bwd="seq", bwd_row_sum=1), v(bwd_rows=8, bwd_warps=8),
               v(bwd_rows=16, rows_block=16), v(bwd_rows=4, bwd_warps=4), v(bwd_rows=8, rows_block=32)]
    seen = {describe_bwd(cfg)}      # the default, and no variant twice
    return [(label, c) for label, c in out if not (label in seen or seen.add(label))]


def tune_variants(name, cfg):
    """(label, config) of the forward variants timed with --tune: at most 6 per shape, each a
    real alternative to the default (rows per program, warps, prefetch depth, chunking), kept
    few because every new constexpr combination is a compile (the N=16 sequential kernel takes
    10-20 s)."""
    def v(**kw):
        c = dict(cfg, **kw)
        return describe(c), c
    if name == "dass":
        # rows 8 / 2 and prefetch 1 were slower than the default on the H100 (results/gpu/scan_recheck):
        # deeper prefetch keeps more bytes in flight per warp
        out = [v(rows_carry_in_scan=False),    # the carry added after the scan (78f5022; same run A/B)
               v(prefetch=3), v(prefetch=4), v(rows_vec=2, prefetch=1), v(rows=8),
               v(fwd="scan", block_l=512, num_warps=4, chained=False)]   # best of the old ones
    elif name == "long":
        c = cfg.get("n_chunks", 88)
        # chunk counts (c//2, 2c, 4c) and prefetch 1 were within 3% of the default on the H100
        # (results/gpu/scan_bench.log): try deeper prefetch and Triton's load pipelining instead
        out = [v(prefetch=4), v(prefetch=8), v(seq_stages=1), v(seq_stages=4),
               v(prefetch=4, seq_stages=1)]
    elif name in ("dass_long", "dass_long_s1"):
        # vectors per lane, rows per program, prefetch; the previous default for few rows: "seq"
        # with 88 chunks (a pre-pass reads u and delta once more)
        out = [v(rows_vec=2), v(rows_vec=8), v(rows=4, rows_warps=4), v(prefetch=2),
               v(fwd="seq", n_chunks=88, prefetch=2)]
    elif cfg["fwd"] == "seq":     # aum, aum_model: the sequential forward, a thread per row
        # B / C loaded a tile ahead (its stalls were on those loads); register caps (168 registers
        # give 12 one-warp programs per SM; at the long shape a cap of 168 / 128 made bf16 11% / 10%
        # faster, docs/scans.md); two warps per program; the rows kernel
        out = [v(seq_bc_prefetch=True), v(seq_maxnreg=128), v(seq_maxnreg=128, seq_bc_prefetch=True),
               v(seq_maxnreg=96), v(seq_warps=2, prefetch=2), v(fwd="rows", prefetch=2)]
    else:                         # ssam_model (N = 24): the rows forward
        out = [v(rows=2, rows_warps=2), v(prefetch=2), v(rows=8, rows_warps=4),
               v(fwd="seq", seq_warps=2, n_chunks=1, prefetch=2),         # best of the old ones
               # the sequential kernel (255 registers at N = 24 bf16, no spills), and capped
               v(fwd="seq", n_chunks=1, prefetch=1), v(fwd="seq", n_chunks=1, prefetch=1, seq_maxnreg=168)]
    seen, res = {describe(cfg)}, []
    for label, c in out:
        if label not in seen:
            seen.add(label)
            res.append((label, c))
    return res[:6]


class Bench:
    def __init__(self, args, device, log, writer):
        self.args, self.device, self.log, self.writer = args, device, log, writer
        self.t0 = time.perf_counter()
        self.copy_gbps = float("nan")
        self.skipped = 0
        self.timings = {}   # (shape, dtype, mode, backend) -> ms of the default configs

    def left(self):
        return self.args.budget_s - (time.perf_counter() - self.t0)

    def over_budget(self, what):
        if self.left() > 0:
            return False
        self.skipped += 1
        self.log(f"skip {what}: time budget {self.args.budget_s:.0f} s spent")
        return True

    def record(self, name, sh, dname, backend, variant, mode, fn):
        if self.over_budget(f"{name} {dname} {backend} {variant} {mode}"):
            return None
        dev = self.device
        try:
            ms, reps = timed(fn, dev, cap_s=min(self.args.case_cap_s, max(1.0, self.left())))
            mem = peak_mb(fn, dev)
        except torch.cuda.OutOfMemoryError:
            self.log(f"{name:5s} {dname} {backend:6s} {variant:26s} {mode:7s} out of memory")
            torch.cuda.empty_cache()
            return None
        nbytes = min_bytes(sh, DTYPES[dname], mode.startswith("fwd+bwd"))
        gbps = nbytes / ms / 1e6
        pct = 100 * gbps / self.copy_gbps
        self.writer.writerow(dict(
            shape=name, batch=sh["batch"], dim=sh["dim"], L=sh["L"], N=sh["N"], groups=sh["G"],
            z=int(sh["z"]), dtype=dname, backend=backend, variant=variant, mode=mode,
            ms=f"{ms:.4f}", min_bytes=nbytes, GBps=f"{gbps:.1f}", pct_copy=f"{pct:.1f}",
            peak_MiB=f"{mem:.1f}", reps=reps))
        self.args.csv_file.flush()
        self.log(f"{name:5s} {dname} {backend:6s} {variant:26s} {mode:7s} {ms:9.3f} ms "
                 f"{gbps:8.1f} GB/s {pct:5.1f}% copy  peak {mem:8.1f} MiB  ({reps} reps)")
        if variant.startswith(("default", "mamba-ssm")):
            self.timings[(name, dname, mode, backend)] = ms
        return ms

    def record_graph(self, name, sh, dname, backend, variant, mode, fn):
        """:meth:`record` of ``fn`` replayed as a CUDA graph (mode "<mode> graph"); skipped on the CPU."""
        if self.device.type != "cuda" or self.over_budget(f"{name} {dname} {backend} {mode} graph"):
            return None
        try:
            replay = graphed(fn, self.device)
        except RuntimeError as e:      # a backend that cannot be captured: say so, time the rest
            self.log(f"{name:5s} {dname} {backend:6s} {mode} graph: capture failed ({str(e)[:120]})")
            return None
        return self.record(name, sh, dname, backend, variant, f"{mode} graph", replay)

    def pairs(self):
        """{(shape, dtype, mode): (triton default ms, mamba ms)} where both were timed."""
        return {k[:3]: (ms, self.timings[k[:3] + ("mamba",)]) for k, ms in self.timings.items()
                if k[3] == "triton" and k[:3] + ("mamba",) in self.timings}

    def check(self, shapes):
        """Triton (default config of each timed shape) vs a float64 reference (the torch backend
        in float64): y and every gradient."""
        worst = 0.0
        for name, sh in shapes.items():
            cfg = default_config(sh, self.device, self.args.smoke)
            csh = dict(sh, **(CHECK_SIZES.get(name, {}) if not self.args.smoke else {}))
            for dname in self.args.dtypes:
                if self.over_budget(f"check {name} {dname}"):
                    worst = math.inf
                    continue
                ins = make_inputs(csh, DTYPES[dname], self.device, seed=1, requires_grad=True)
                ref_in = [t.detach().double().requires_grad_(True) if t is not None else None
                          for t in ins]
                ref = scan_call("torch", ref_in)
                gy = torch.randn_like(ref)
                ref.backward(gy)
                try:
                    y = scan_call("triton", ins, cfg)
                    y.backward(gy.to(y.dtype))
                    errs = [rel(y, ref)] + [rel(a.grad, b.grad) for a, b in zip(ins, ref_in)
                                            if a is not None]
                except Exception as e:  # reported; the other cases still run
                    self.log(f"check {name} {dname} [{describe(cfg)}]: FAILED "
                             f"{type(e).__name__}: {e}")
                    worst = math.inf
                    continue
                self.log(f"check {name} {dname} [{describe(cfg)}] L={csh['L']} "
                         f"batch={csh['batch']}: rel err y {errs[0]:.2e}, "
                         f"grads max {max(errs[1:]):.2e}")
                if DTYPES[dname] == torch.float32:
                    worst = max(worst, *errs)
                if MAMBA is not None:
                    for t in ins:
                        if t is not None:
                            t.grad = None
                    y = scan_call("mamba", ins)
                    y.backward(gy.to(y.dtype))
                    merrs = [rel(y, ref)] + [rel(a.grad, b.grad) for a, b in zip(ins, ref_in)
                                             if a is not None]
                    self.log(f"check {name} {dname} mamba-ssm: rel err y {merrs[0]:.2e}, "
                             f"grads max {max(merrs[1:]):.2e}")
                del ins, ref_in, ref, gy
        self.log(f"check: worst fp32 rel err (y and grads) {worst:.2e}")
        return worst

    def fwd_default(self, name, sh, dname):
        ins = make_inputs(sh, DTYPES[dname], self.device)
        cfg = default_config(sh, self.device, self.args.smoke)
        with torch.no_grad():
            self.record(name, sh, dname, "triton", f"default {describe(cfg)}", "fwd",
                        lambda: scan_call("triton", ins, cfg))
            if MAMBA is not None:
                self.record(name, sh, dname, "mamba", "mamba-ssm selective_scan_cuda", "fwd",
                            lambda: scan_call("mamba", ins))
            # the same calls replayed as CUDA graphs: kernels only (the host's work per call is left out)
            self.record_graph(name, sh, dname, "triton", f"default {describe(cfg)}", "fwd",
                              lambda: scan_call("triton", ins, cfg))
            if MAMBA is not None:
                self.record_graph(name, sh, dname, "mamba", "mamba-ssm selective_scan_cuda", "fwd",
                                  lambda: scan_call("mamba", ins))
            # at the timed size, chained chunks (many programs in flight) against one chunk
            ref = unchunked(cfg)
            if ref is not None and not self.over_budget(f"{name} {dname} chunk consistency"):
                err = rel(scan_call("triton", ins, cfg), scan_call("triton", ins, ref))
                ok = err < (1e-5 if dname == "fp32" else 1e-2)
                self.log(f"{name:5s} {dname} forward chunked vs one chunk [{describe(ref)}]: "
                         f"rel {err:.1e}{'' if ok else '  MISMATCH'}")

    def fwd_bwd(self, name, sh, dname, backend, cfg=None, label=None):
        default = cfg is None
        if default:
            cfg = default_config(sh, self.device, self.args.smoke)
            label = "default" + (f" {describe_bwd(cfg)}" if backend == "triton" else "")
        gins = make_inputs(sh, DTYPES[dname], self.device, requires_grad=True)
        gy = torch.randn(sh["batch"], sh["dim"], sh["L"], device=self.device, dtype=DTYPES[dname])

        def run(c=cfg):
            for t in gins:
                if t is not None:
                    t.grad = None
            scan_call(backend, gins, c).backward(gy)
        self.record(name, sh, dname, backend, label, "fwd+bwd", run)
        if default:
            self.record_graph(name, sh, dname, backend, label, "fwd+bwd", run)
        ref = unchunked(cfg) if default and backend == "triton" else None
        if ref is not None and not self.over_budget(f"{name} {dname} chunk consistency"):
            run()
            g0 = [t.grad.clone() for t in gins if t is not None]
            run(ref)
            err = max(rel(t.grad, g) for t, g in zip([t for t in gins if t is not None], g0))
            ok = err < (1e-4 if dname == "fp32" else 3e-2)
            self.log(f"{name:5s} {dname} gradients chunked vs one chunk: rel {err:.1e}"
                     f"{'' if ok else '  MISMATCH'}")

    def agrees(self, tag, error, tol, what):
        """True when the variant runs and ``error()`` (relative error vs the default's ``what``)
        is below ``tol``; otherwise the failure or mismatch is logged and the variant skipped."""
        try:
            err = error()
        except Exception as e:
            self.log(f"{tag} FAILED {type(e).__name__}: {e}")
            return False
        if not err < tol:
            self.log(f"{tag} MISMATCH vs default {what}: rel {err:.1e}")
            return False
        return True

    def tune(self, name, sh, dname):
        ins = make_inputs(sh, DTYPES[dname], self.device)
        cfg = default_config(sh, self.device, self.args.smoke)
        tol = 1e-5 if dname == "fp32" else 1e-2
        with torch.no_grad():
            y0 = scan_call("triton", ins, cfg)
            for label, v in self.variants(name, cfg):
                if self.over_budget(f"tune {name} {dname} {label}") or not self.agrees(
                        f"{name:5s} {dname} triton {label:26s}", lambda v=v: rel(scan_call("triton", ins, v), y0),
                        tol, "output"):
                    continue
                self.record(name, sh, dname, "triton", label, "fwd",
                            lambda v=v: scan_call("triton", ins, v))

    def variants(self, name, cfg):
        """--variants (JSON {shape: [overrides, ...]}) where given, else tune_variants."""
        if self.args.variants is not None and name in self.args.variants:
            configs = [dict(cfg, **o) for o in self.args.variants[name]]
            return [(describe(c), c) for c in configs]
        return tune_variants(name, cfg)

    def tune_bwd(self, name, sh, dname):
        """Backward variants (timed as forward+backward), each first compared with the
        default's gradients."""
        cfg = default_config(sh, self.device, self.args.smoke)
        if self.args.bwd_variants is not None:
            variants = [(describe_bwd(c), c) for c in
                        (dict(cfg, **o) for o in self.args.bwd_variants.get(name, []))]
        else:
            variants = tune_bwd_variants(name, cfg)
        if not variants or self.over_budget(f"tune {name} {dname} backward"):
            return
        gins = make_inputs(sh, DTYPES[dname], self.device, requires_grad=True)
        gy = torch.randn(sh["batch"], sh["dim"], sh["L"], device=self.device, dtype=DTYPES[dname])

        def run(c):
            for t in gins:
                if t is not None:
                    t.grad = None
            scan_call("triton", gins, c).backward(gy)

        def grads(c):
            run(c)
            return [t.grad.clone() for t in gins if t is not None]
        g0 = grads(cfg)
        tol = 1e-4 if dname == "fp32" else 3e-2
        for label, v in variants:
            if self.over_budget(f"tune {name} {dname} {label}") or not self.agrees(
                    f"{name:5s} {dname} triton {label:26s}",
                    lambda v=v: max(rel(a, b) for a, b in zip(grads(v), g0)), tol, "grads"):
                continue
            self.record(name, sh, dname, "triton", label, "fwd+bwd", lambda v=v: run(v))
            self.record_graph(name, sh, dname, "triton", label, "fwd+bwd", lambda v=v: run(v))
        del gins, g0

    def torch_baseline(self, name, sh, dname):
        elems = sh["batch"] * sh["dim"] * sh["L"] * sh["N"]
        if elems > TORCH_MAX_ELEMS:
            self.log(f"{name:5s} {dname} torch  skipped: {elems / 1e9:.1f}e9 state elements per "
                     f"call (several seconds each)")
            return
        ins = make_inputs(sh, DTYPES[dname], self.device)
        with torch.no_grad():
            self.record(name, sh, dname, "torch", "default", "fwd", lambda: scan_call("torch", ins))
        del ins
        self.fwd_bwd(name, sh, dname, "torch")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", default="scan_bench.csv")
    ap.add_argument("--log", default="scan_bench.log")
    ap.add_argument("--tune", action="store_true", help="also time forward variants of the kernels")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes (CPU, TRITON_INTERPRET=1)")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--dtypes", default=",".join(DTYPES))
    ap.add_argument("--no-torch", action="store_true", help="time the triton backend only")
    ap.add_argument("--no-bwd", action="store_true", help="time forward passes only")
    ap.add_argument("--variants", type=json.loads, default=None,
                    help='forward variants to time instead of the built-in --tune ones, as JSON '
                         '{"shape": [{"field": value, ...}, ...]} (config overrides); implies --tune')
    ap.add_argument("--bwd-variants", type=json.loads, default=None,
                    help="backward variants (timed as forward+backward) to time instead of the built-in "
                         "ones, JSON like --variants; implies --tune (forward variants then only where "
                         "--variants names them)")
    ap.add_argument("--budget-s", type=float, default=210.0,
                    help="overall time budget; later cases are skipped with a note")
    ap.add_argument("--case-cap-s", type=float, default=30.0,
                    help="time one case may use (fewer repetitions past it)")
    ap.add_argument("--mamba-ext", default=None,
                    help="folder with mamba-ssm's selective_scan_cuda module "
                         "(scripts/build_mamba_scan.py): adds its kernel as backend 'mamba'")
    args = ap.parse_args()
    global MAMBA
    MAMBA = load_mamba(args.mamba_ext)
    args.tune = args.tune or args.variants is not None or args.bwd_variants is not None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        sys.exit("no CUDA device: run on a GPU, or use --smoke with TRITON_INTERPRET=1")
    base = SMOKE_SHAPES if args.smoke else SHAPES
    shapes = {k: base[k] for k in args.shapes.split(",") if k in base}
    args.dtypes = [d for d in args.dtypes.split(",") if d in DTYPES]
    logf = open(args.log, "w")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    import triton
    meta = dict(device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                torch=torch.__version__, triton=triton.__version__,
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    log(" ".join(f"{k}={v}" for k, v in meta.items())
        + f" budget_s={args.budget_s:.0f} tune={int(args.tune)}"
        + f" mamba_ssm={'yes' if MAMBA is not None else 'no'}")
    args.csv_file = open(args.csv, "w", newline="")
    writer = csv.DictWriter(args.csv_file, fieldnames=CSV_FIELDS)
    bench = Bench(args, device, log, writer)
    bench.copy_gbps = copy_bandwidth(device, log)
    worst = bench.check(shapes)
    args.csv_file.write("# " + " ".join(f"{k}={v}" for k, v in meta.items())
                        + f" copy_GBps={bench.copy_gbps:.1f} worst_fp32_rel_err={worst:.2e}\n")
    writer.writeheader()
    args.csv_file.flush()

    cases = [(n, sh, d) for n, sh in shapes.items() for d in args.dtypes]
    for name, sh, dname in cases:
        bench.fwd_default(name, sh, dname)
    for name, sh, dname in cases:
        if not args.no_bwd and not bench.over_budget(f"{name} {dname} triton fwd+bwd"):
            bench.fwd_bwd(name, sh, dname, "triton")
            if MAMBA is not None:
                bench.fwd_bwd(name, sh, dname, "mamba", cfg={}, label="mamba-ssm selective_scan_cuda")
    if MAMBA is not None:
        log("mamba-ssm time / triton time (above 1: ours faster):")
        for (name, dname, mode), (tri, mam) in sorted(bench.pairs().items()):
            log(f"  {name:12s} {dname} {mode:13s} triton {tri:8.3f} ms  mamba-ssm {mam:8.3f} ms  "
                f"ratio {mam / tri:5.2f}")
    if args.tune:
        # forward variants, fp32 of every shape first, then bf16; then backward variants
        by_dtype = sorted(cases, key=lambda c: args.dtypes.index(c[2]))
        for name, sh, dname in by_dtype:
            if args.bwd_variants is None or (args.variants or {}).get(name):
                bench.tune(name, sh, dname)
        for name, sh, dname in by_dtype:
            if not args.no_bwd and (args.variants is None or args.bwd_variants is not None):
                bench.tune_bwd(name, sh, dname)
    if not args.no_torch:
        for name, sh, dname in cases:
            if not bench.over_budget(f"{name} {dname} torch"):
                bench.torch_baseline(name, sh, dname)
    log(f"done in {time.perf_counter() - bench.t0:.0f} s, {bench.skipped} case(s) skipped; "
        f"wrote {os.path.basename(args.csv)}")
    args.csv_file.close()


if __name__ == "__main__":
    main()
