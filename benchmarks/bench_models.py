"""Whole-model speed on one GPU: eager vs the fast path (:mod:`dasslib.fast`), with checks first.

    python -m benchmarks.bench_models --csv results/gpu/model_speed_<date>.csv
        [--models ast_base_sdpa,dass_small,dass_medium,aum_base,ssam_base] [--check-model dass_small]
        [--repeats 20] [--skip-train] [--skip-b1]

For each model, on 10 s clips (1024 x 128 fbank; SSAM 1000 x 80), random weights, 527 classes,
bf16 autocast (weights fp32), it measures:
  inference at B=1 and B=32, eager and fast ("auto": compiled + CUDA-graph replay): median ms
  per call, clips/s, peak memory (MiB, max_memory_allocated over the timed calls);
  B=1 latency through ``dasslib.inference.predict`` (host input, host logits), eager and fast;
  a training step at B=12 (forward, BCE, backward, AdamW step), eager and compiled;
  FLOPs per clip (matmul + conv + attention, torch.utils.flop_counter) and achieved TFLOP/s;
  a floor for the B=32 forward: the larger of FLOPs / measured bf16 matmul rate and bytes /
  measured copy bandwidth, where bytes = every input and output of the ops a compiler cannot
  fuse away (matmuls, convolutions, attention, the selective scan) counted once;
  each row's ratio to AST-Base-SDPA's clips/s in the same run and mode, eager and fast.
Before timing, ``--check-model`` (default DASS-Small) runs its fast paths against eager in fp32
(TF32 off): logits (inference) and logits + every gradient (one compiled training step on B=2),
relative L2 errors, which must be < 1e-4 (logits) and 1e-3 (gradients) or the script exits 1.
Every other model's fast B=32 logits are compared with eager under bf16 autocast (reported).
Rows are written to the CSV (appended, with a header if new) as soon as they are measured.
Timing: :func:`dasslib.bench.time_step` (CUDA events, warm-up calls first, median): each call timed alone
on an idle GPU, so the host's work per call counts. Inference rows also give ``ms_back_to_back``, the mean
of 20 calls issued without a synchronisation in between (host work hidden behind the GPU's: throughput),
and its ratio to AST-Base-SDPA's eager path timed the same way.
"""
import argparse
import csv
import datetime
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from dasslib import fast as fast_settings
from dasslib import models
from dasslib.bench import make_step, peak_memory_mb, reset_peak, time_step
from dasslib.bench.timing import back_to_back_ms
from dasslib.fast import compile_for_training, fast_forward, resolve_fast
from dasslib.inference import predict
from dasslib.runtime import cuda_autocast
from dasslib.scans import triton_backend as scan_settings

MODELS = {  # label -> (registry name, overrides, (frames, mel_bins))
    "ast_base_sdpa": ("ast_base", dict(attn="sdpa"), (1024, 128)),
    "ast_base_eager": ("ast_base", dict(attn="eager"), (1024, 128)),
    "dass_small": ("dass_small", {}, (1024, 128)),
    # training with SS2D scanning the grid in place (rows backward with the direction layout)
    # training with the cross-scan copies (fused_scan_train=False; the default scans in place)
    "dass_small_copies_train": ("dass_small", dict(fused_scan_train=False), (1024, 128)),
    # the scan's output in the compute dtype (bf16 under autocast) instead of the official fp32 on every path
    # (SS2D's fused inference does so by default since 232ce30; these labels change training and the
    # unfused path too)
    "dass_small_bf16_scan": ("dass_small", dict(scan_fp32=False), (1024, 128)),
    "dass_medium_bf16_scan": ("dass_medium", dict(scan_fp32=False), (1024, 128)),
    # the stem's and SS2D's convolutions as tap sums in the compiled forward (default: cuDNN's)
    "dass_small_taps": ("dass_small", {}, (1024, 128)),
    # inference: cross-merge + out_norm left to inductor instead of the merge kernel
    "dass_small_inductor_merge": ("dass_small", {}, (1024, 128)),
    # the merge kernel at every stage (default: stages with >= 4096 positions, inductor's kernel below)
    "dass_small_merge_all": ("dass_small", {}, (1024, 128)),
    # inference: the stem's first conv, LayerNorm and GELU as the stem's layers (default: one Triton kernel)
    "dass_small_no_stem_kernel": ("dass_small", {}, (1024, 128)),
    # the stem kernel's forms: its first (128 positions x 8 warps, FMAs over strided taps; the default
    # until 3819f87), reading a (B, F, T) copy of the fbank (coalesced taps), the convolution on the tensor
    # cores (stem_kernel._stem_dot_kernel, the default since, at 64 positions x 4 warps) at 128 x 8
    "dass_small_stem_first": ("dass_small", {}, (1024, 128)),
    "dass_medium_stem_first": ("dass_medium", {}, (1024, 128)),
    "dass_small_stem_ft": ("dass_small", {}, (1024, 128)),
    "dass_small_stem_dot": ("dass_small", {}, (1024, 128)),
    "dass_small_stem_dot_ft": ("dass_small", {}, (1024, 128)),
    "dass_medium_stem_dot": ("dass_medium", {}, (1024, 128)),
    # inference: the fused scan's y in fp32 as scan_fp32 has it (default: the compute dtype, summed in fp32)
    "dass_small_fp32_y": ("dass_small", {}, (1024, 128)),
    "dass_medium_fp32_y": ("dass_medium", {}, (1024, 128)),
    "dass_medium_merge_all": ("dass_medium", {}, (1024, 128)),
    # the merge kernel also at stage 2 (2048 positions; the choice from e411548 to bd63c0f)
    "dass_small_merge_2048": ("dass_small", {}, (1024, 128)),
    # inference: the dt projection as a GEMM writing the (B, 4D, L) delta the scan reads (before the
    # projection moved inside the scan), and the projection inside the scan up to rank 24 (stage 3 too)
    "dass_small_no_dtproj": ("dass_small", {}, (1024, 128)),
    "dass_small_dtproj24": ("dass_small", {}, (1024, 128)),
    "dass_medium": ("dass_medium", {}, (1024, 128)),
    "dass_medium_dtproj24": ("dass_medium", {}, (1024, 128)),
    # the fast path's CUDA graph captured whole by torch.cuda.graph (dasslib.fast.GRAPH_CAPTURE = "whole")
    # instead of inductor's CUDA-graph trees
    "ast_base_sdpa_whole_graph": ("ast_base", dict(attn="sdpa"), (1024, 128)),
    "dass_small_whole_graph": ("dass_small", {}, (1024, 128)),
    "dass_medium_whole_graph": ("dass_medium", {}, (1024, 128)),
    "aum_base_whole_graph": ("aum_base", {}, (1024, 128)),
    "ssam_base_whole_graph": ("ssam_base", {}, (1000, 80)),
    "aum_base": ("aum_base", {}, (1024, 128)),
    # Fo-Bi with the flipped copies (before the fobi layout) and cuDNN's depthwise conv1d
    "aum_base_copies": ("aum_base", {}, (1024, 128)),
    # the scan over AuM's 513 steps as they are (no zero padding to 528: element-wise bf16 loads)
    "aum_base_unpadded": ("aum_base", {}, (1024, 128)),
    # the seq backward after the seq forward (dasslib.scans.triton_backend.SEQ_BACKWARD: dB / dC summed
    # over 8 rows per atomic), training against the rows backward
    "aum_base_seq_bwd": ("aum_base", {}, (1024, 128)),
    # Bi-Bi (the backward stream's own conv / projections): its scan by index arithmetic (layout "bibi"),
    # and with flipped copies
    "aum_base_bibi": ("aum_base", {"bimamba": "bi_bi"}, (1024, 128)),
    "aum_base_bibi_copies": ("aum_base", {"bimamba": "bi_bi"}, (1024, 128)),
    "aum_small": ("aum_small", {}, (1024, 128)),
    "ssam_base": ("ssam_base", {}, (1000, 80)),
    "ssam_small": ("ssam_small", {}, (1000, 80)),
}
# module attributes a label sets after building (variants of the same weights and keys)
ATTRS = {"dass_small_taps": dict(tap_form=True),
         "dass_small_inductor_merge": dict(merge_kernel=False),
         "dass_small_merge_all": dict(merge_kernel_min_positions=0),
         "dass_small_no_stem_kernel": dict(stem_kernel=False),
         "dass_small_stem_first": dict(stem_tiles=(128, 8, False, False)),
         "dass_medium_stem_first": dict(stem_tiles=(128, 8, False, False)),
         "dass_small_stem_ft": dict(stem_tiles=(64, 4, True, False)),
         "dass_small_stem_dot": dict(stem_tiles=(128, 8, False, True)),
         "dass_small_stem_dot_ft": dict(stem_tiles=(128, 8, True, True)),
         "dass_medium_stem_dot": dict(stem_tiles=(128, 8, False, True)),
         "dass_small_fp32_y": dict(y_fp32_inference=True),
         "dass_medium_fp32_y": dict(y_fp32_inference=True),
         "dass_medium_merge_all": dict(merge_kernel_min_positions=0),
         "dass_small_merge_2048": dict(merge_kernel_min_positions=2048),
         "dass_small_no_dtproj": dict(dtproj_in_scan=False),
         "dass_small_dtproj24": dict(dtproj_max_rank=24),
         "dass_medium_dtproj24": dict(dtproj_max_rank=24),
         "aum_base_copies": dict(tap_form=False, in_place=False, scan_pad="never"),
         "aum_base_unpadded": dict(scan_pad="never"),
         "aum_base_bibi_copies": dict(in_place=False)}
# dasslib.fast settings a label runs under (every other label runs under their defaults): the
# "*_whole_graph" labels capture the whole forward
FAST_ATTRS = {label: dict(GRAPH_CAPTURE="whole") for label in MODELS if label.endswith("_whole_graph")}
_FAST_DEFAULTS = {k: getattr(fast_settings, k) for attrs in FAST_ATTRS.values() for k in attrs}
# dasslib.scans.triton_backend settings a label runs under (pick_config's choices)
SCAN_ATTRS = {"aum_base_seq_bwd": dict(SEQ_BACKWARD=8)}
_SCAN_DEFAULTS = {k: getattr(scan_settings, k) for attrs in SCAN_ATTRS.values() for k in attrs}
BASELINE = "ast_base_sdpa"
FIELDS = ["date", "device", "torch", "triton", "commit", "model", "params_M", "path", "mode",
          "batch", "frames", "mel_bins", "ms", "ms_p10", "ms_p90", "clips_per_s", "peak_MiB",
          "gflops_per_clip", "tflops", "floor_ms", "floor_bytes_per_clip", "ratio_vs_ast_eager",
          "ratio_vs_ast_fast", "ms_back_to_back", "ratio_back_to_back_vs_ast_eager", "first_call_s", "note"]
# ops whose inputs and outputs a compiler cannot fuse away (the byte floor counts them once);
# under inference mode the dispatch mode sees the composite ops (linear, conv2d, einsum, sdpa)
# before they decompose, elsewhere their parts (mm, convolution, bmm): both are listed
_FLOOR_OPS = ("aten.linear", "aten.conv1d", "aten.conv2d", "aten.convolution", "aten.einsum",
              "aten.matmul", "aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm",
              "aten.scaled_dot_product_attention", "aten._scaled_dot_product",
              "dasslib.selective_scan_fwd")


class ByteCounter(TorchDispatchMode):
    """Sum of the bytes of every tensor input and output of the ``_FLOOR_OPS`` calls."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func.overloadpacket) if hasattr(func, "overloadpacket") else str(func)
        name = name.replace("::", ".")
        if name.startswith(_FLOOR_OPS) and (name in _FLOOR_OPS or "._scaled" in name
                                            or name.startswith("aten._scaled_dot_product")):
            flat = list(args) + list((kwargs or {}).values())
            outs = out if isinstance(out, (tuple, list)) else [out]
            for t in flat + list(outs):
                if torch.is_tensor(t) and t.numel() > 1:
                    self.bytes += t.numel() * t.element_size()
        return out


def commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        return ""


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


SMOKE = {"ast": dict(embed_dim=32, depth=1, num_heads=2), "ssam": dict(embed_dim=32, depth=1),
         "aum": dict(embed_dim=32, depth=1), "dass": dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))}
_smoke = False


def build(label, device):
    """(model, frames, mel_bins); under --smoke a tiny model of the same family on 128 frames."""
    name, kw, (frames, mel) = MODELS[label]
    torch.manual_seed(0)
    if _smoke:
        kw, frames = {**kw, **SMOKE[name.split("_")[0]]}, 128
    m = models.create(name, num_classes=527, **kw).to(device)
    for attr, value in ATTRS.get(label, {}).items():
        for mod in m.modules():
            if hasattr(mod, attr):
                setattr(mod, attr, value)
    return m, frames, mel


def device_ceilings(device, log, small=False):
    """(copy GB/s counting read + write, bf16 matmul TFLOP/s), measured now."""
    n, k = (1 << 20, 256) if small else (1 << 28, 8192)
    src = torch.randn(n // 4, device=device)   # 256 MiB fp32
    dst = torch.empty_like(src)
    t = time_step(lambda: dst.copy_(src), device, warmup=3, repeats=20).median_ms
    copy = 2 * src.numel() * 4 / t / 1e6
    a = torch.randn(k, k, device=device, dtype=torch.bfloat16)
    b = torch.randn(k, k, device=device, dtype=torch.bfloat16)
    t = time_step(lambda: a @ b, device, warmup=3, repeats=20).median_ms
    mm = 2 * k ** 3 / t / 1e9
    log(f"copy {copy:.0f} GB/s, bf16 matmul {mm:.0f} TFLOP/s")
    del src, dst, a, b
    return copy, mm


def count_flops_bytes(model, x):
    """(FLOPs, floor bytes) of one bf16-autocast inference forward on x."""
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)     # the flop counter's module hooks trip over leaf outputs
    try:
        with torch.inference_mode(), cuda_autocast(x.device, torch.bfloat16):
            with FlopCounterMode(display=False) as fc:
                model(x)
            bc = ByteCounter()
            with bc:
                model(x)
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    return fc.get_total_flops(), bc.bytes


def check_fast_matches_eager(label, device, log, graph_training=True, training=True):
    """fp32 (TF32 off): fast inference logits and a compiled training step's logits and
    gradients against eager. Returns dict of relative errors."""
    m, frames, mel = build(label, device)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    errs = {}
    try:
        g = torch.Generator(device=device).manual_seed(1)
        x = torch.randn(2, frames, mel, device=device, generator=g)
        m.eval()
        with torch.inference_mode():
            ref = m(x)
            for mode in ("compile", "graphs"):
                out = fast_forward(m, mode, x)(x).clone()
                errs[f"logits_{mode}"] = rel(out, ref)
            fused = [mod for mod in m.modules() if getattr(mod, "fused_scan", False)]
            if fused:   # DASS: the in-place SS2D scan against the cross-scan copies
                for mod in fused:
                    mod.fused_scan = False
                errs["logits_fused_vs_copies"] = rel(ref, m(x))
                for mod in fused:
                    mod.fused_scan = True
        if training:
            _no_drop_path(m).train()    # no drop path: both runs must see the same network
            y = torch.rand(2, 527, device=device, generator=g)
            loss = F.binary_cross_entropy_with_logits(m(x), y)
            loss.backward()
            ref_g = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
            m.zero_grad(set_to_none=True)
            cm = torch.compile(m, dynamic=False)
            loss_c = F.binary_cross_entropy_with_logits(cm(x), y)
            loss_c.backward()
            errs["train_loss"] = abs(loss_c.item() - loss.item()) / abs(loss.item())
            gerr = {n: rel(p.grad, ref_g[n]) for n, p in m.named_parameters() if n in ref_g}
            worst = max(gerr, key=gerr.get)
            errs["grad_worst"] = gerr[worst]
            errs["grad_worst_param"] = worst
            errs["grad_missing"] = sorted(set(ref_g) - set(gerr))
            if device.type == "cuda" and graph_training:
                errs.update(check_graph_training(label, device, x, y))
    finally:
        torch.backends.cudnn.allow_tf32 = True
    log(f"check {label} fp32 fast vs eager: {errs}")
    return errs


def _no_drop_path(m):
    for p in m.modules():
        if hasattr(p, "drop_prob"):
            p.drop_prob = 0.0
    return m


def check_graph_training(label, device, x, y, steps=3, lr=0.05):
    """Training replayed as CUDA graphs (make_step's "graphs" path) against eager, fp32, drop
    path off: ``steps`` SGD steps from the same weights. A step that read stale or overwritten
    gradients, or a graph that froze the parameters, shows in the losses after the first step
    and in the weight updates. Also: with drop path on, two replayed forwards differ (the random
    masks are not frozen into the graph)."""
    runs = {}
    for path in ("off", "graphs"):
        m = _no_drop_path(build(label, device)[0]).train()
        p0 = {n: p.detach().clone() for n, p in m.named_parameters()}
        opt = torch.optim.SGD(m.parameters(), lr=lr)
        net = compile_for_training(m, path, device)
        losses = []
        for _ in range(steps):
            if path == "graphs":
                torch.compiler.cudagraph_mark_step_begin()
            loss = F.binary_cross_entropy_with_logits(net(x), y)
            loss.backward()
            opt.step()
            m.zero_grad(set_to_none=True)
            losses.append(loss.item())
        runs[path] = (losses, {n: p.detach() - p0[n] for n, p in m.named_parameters()})
        del net, opt
    (le, ue), (lg, ug) = runs["off"], runs["graphs"]
    out = {"graphs_train_loss": max(abs(a - b) / abs(a) for a, b in zip(le, lg)),
           "graphs_train_losses": [round(v, 6) for v in lg],
           "graphs_update_worst": max(rel(ug[n], ue[n]) for n in ue if ue[n].norm() > 0)}
    m = build(label, device)[0].train()   # drop path on (the model's default rates)
    net = compile_for_training(m, "graphs", device)
    outs = []
    with torch.no_grad():
        for _ in range(2):
            torch.compiler.cudagraph_mark_step_begin()
            outs.append(net(x).clone())
    out["graphs_drop_path_varies"] = bool((outs[0] - outs[1]).abs().max() > 0)
    return out


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


PROFILE = {}   # --profile-dir: {"dir": folder, "name": file stem of the case being timed}


def _timed(step, device, warmup, repeats):
    """(Timing, peak MiB over the timed calls, seconds of the first call: compiles included). With
    --profile-dir, the timed step's kernel table is written there too (same compiled step)."""
    t0 = time.perf_counter()
    step()
    _sync(device)
    first = time.perf_counter() - t0
    reset_peak(device)
    timing = time_step(step, device, warmup=warmup, repeats=repeats)
    peak = peak_memory_mb(device)
    if PROFILE.get("name") and device.type == "cuda":
        from benchmarks.profile_model import kernel_table

        path = os.path.join(PROFILE["dir"], PROFILE["name"] + ".txt")
        with open(path, "w") as f:
            f.write(kernel_table(step, 5, 60, PROFILE["name"]) + "\n")
    return timing, peak, first


def time_inference(m, x, path, repeats, calls=20):
    """_timed's (Timing, peak, first) of one forward, and the mean ms per forward of ``calls`` forwards
    issued back to back (:func:`dasslib.bench.timing.back_to_back_ms`: the host's work per call hidden
    behind the GPU's, where each timed call exposes it)."""
    fwd = m if path == "eager" else fast_forward(m, "auto", x)
    m.eval()

    def step():
        with torch.inference_mode(), cuda_autocast(x.device, torch.bfloat16):
            fwd(x)
    timing, peak, first = _timed(step, x.device, 3, repeats)
    return timing, peak, first, back_to_back_ms(step, x.device, calls)


def time_predict(m, x_host, path, repeats, device):
    fast = "off" if path == "eager" else "auto"
    return _timed(lambda: predict(m, x_host, fast=fast), device, 3, repeats)


def time_train(m, x, fast, repeats):
    step = make_step(m, "train", x, optimizer="adamw",
                     dtype=torch.bfloat16 if x.device.type == "cuda" else torch.float32,
                     fast=fast)
    return _timed(step, x.device, 2, repeats)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", required=True)
    ap.add_argument("--models", default="ast_base_sdpa,dass_small,dass_medium,aum_base,ssam_base")
    ap.add_argument("--check-model", default="dass_small", help="'' to skip the fp32 check")
    ap.add_argument("--no-graph-train-check", action="store_true",
                    help="skip the check's replayed-training part (3 SGD steps, ~2 min)")
    ap.add_argument("--check-inference-only", action="store_true",
                    help="check inference logits only (no compiled training step)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-b1", action="store_true")
    ap.add_argument("--skip-inference", action="store_true")
    ap.add_argument("--train-fast", default="compile",
                    help="comma-separated fast modes timed for the training step (compile, graphs)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny models of each family, small batches, on --device (a check of this "
                         "script, not a benchmark)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--commit", default=None, help="commit to record (default: git rev-parse)")
    ap.add_argument("--profile-dir", default=None,
                    help="also write the kernel table (torch.profiler) of every fast-path case timed "
                         "here, profile_<model>_<mode>_b<batch>.txt (the compiled step just timed)")
    ap.add_argument("--baseline-csv", default=None,
                    help="take AST-Base-SDPA's rows from this CSV when it is not in --models "
                         "(same device and run only)")
    args = ap.parse_args()
    global _smoke
    _smoke = args.smoke
    device = torch.device(args.device)
    big, small, train_b = (4, 1, 2) if args.smoke else (32, 1, 12)
    labels = [s for s in args.models.split(",") if s]
    train_fast = [s for s in args.train_fast.split(",") if s]
    for s in train_fast:
        if s not in ("compile", "graphs"):
            raise SystemExit(f"--train-fast: unknown mode {s!r} (compile, graphs)")
    for s in labels:
        if s not in MODELS:
            raise SystemExit(f"unknown model {s!r}; choose from {sorted(MODELS)}")

    def log(msg):
        print(msg, flush=True)

    name = (torch.cuda.get_device_properties(device).name if device.type == "cuda"
            else f"cpu ({os.cpu_count()} cores)")
    import triton
    meta = dict(date=datetime.date.today().isoformat(), device=name,
                torch=torch.__version__, triton=triton.__version__, commit=args.commit or commit())
    log(f"{meta}")
    copy_gbs, mm_tflops = device_ceilings(device, log, small=args.smoke)

    ok = True
    if args.check_model:
        errs = check_fast_matches_eager(args.check_model, device, log,
                                        graph_training=not args.no_graph_train_check,
                                        training=not args.check_inference_only)
        ok = (errs["logits_compile"] < 1e-4 and errs["logits_graphs"] < 1e-4
              and errs.get("logits_fused_vs_copies", 0.0) < 1e-4
              and errs.get("grad_worst", 0.0) < 1e-3 and not errs.get("grad_missing")
              and errs.get("graphs_train_loss", 0.0) < 1e-4
              and errs.get("graphs_update_worst", 0.0) < 1e-3
              and errs.get("graphs_drop_path_varies", True))
        log(f"check {'passed' if ok else 'FAILED'}")

    new = not os.path.exists(args.csv)
    f = open(args.csv, "a", newline="")
    w = csv.DictWriter(f, fieldnames=FIELDS)
    if new:
        w.writeheader()
    base = {}   # (mode, batch, path) -> clips/s of the baseline
    if args.baseline_csv:
        with open(args.baseline_csv) as bf:
            for r in csv.DictReader(bf):
                if r["model"] == BASELINE:   # path "eager:off" / "fast:<mode>": the best of each
                    k = (r["mode"], int(r["batch"]), r["path"].split(":")[0])
                    base[k] = max(base.get(k, 0.0), float(r["clips_per_s"]))
    if BASELINE in labels:
        labels.remove(BASELINE)
        labels.insert(0, BASELINE)
    summary = []

    for label in labels:
        for k, v in {**_FAST_DEFAULTS, **FAST_ATTRS.get(label, {})}.items():
            setattr(fast_settings, k, v)
        scan = {**_SCAN_DEFAULTS, **SCAN_ATTRS.get(label, {})}
        if any(getattr(scan_settings, k) != v for k, v in scan.items()):
            # the scan's launch config (and its states' shape) is fixed when a graph is traced: trace anew
            torch._dynamo.reset()
            fast_settings.clear_cache()
        for k, v in scan.items():
            setattr(scan_settings, k, v)
        m, frames, mel = build(label, device)
        params = models.count_parameters(m) / 1e6
        x1 = torch.randn(small, frames, mel, device=device)
        flops, _ = count_flops_bytes(m, x1)
        flops /= small
        x32 = torch.randn(big, frames, mel, device=device)
        _, bytes32 = count_flops_bytes(m, x32)
        floor_ms = max(big * flops / (mm_tflops * 1e12), bytes32 / (copy_gbs * 1e9)) * 1e3
        log(f"{label}: {params:.1f} M params, {flops / 1e9:.1f} GFLOP/clip, floor bytes "
            f"{bytes32 / big / 1e6:.1f} MB/clip, B={big} floor {floor_ms:.2f} ms")
        # bf16 fast vs eager at B=32 (same compiled graph as timed)
        m.eval()
        with torch.inference_mode(), cuda_autocast(device, torch.bfloat16):
            e = m(x32).float()
            fz = fast_forward(m, "auto", x32)(x32).float()
        bf16_err = rel(fz, e)
        # and against the fp32 eager logits of the same weights (cuDNN without TF32): what a variant's
        # rounding (e.g. a bf16 scan output) costs, next to the default's own bf16 error
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            with torch.inference_mode():
                fp32_err = rel(fz, m(x32).float())
        finally:
            torch.backends.cudnn.allow_tf32 = tf32
        del e, fz
        log(f"{label}: fast vs eager logits at B={big}, bf16 autocast: rel {bf16_err:.2e}; "
            f"fast bf16 vs eager fp32: rel {fp32_err:.2e}")
        cases = [] if args.skip_inference else (
            [("inference", big, x32)] + ([] if args.skip_b1 else [("inference", small, x1),
                                                                  ("predict", small, x1)]))
        if not args.skip_train:
            cases.append(("train", train_b, torch.randn(train_b, frames, mel, device=device)))
        for mode, batch, x in cases:
            paths = [("eager", "off"), ("fast", None)]
            if mode == "train":
                paths = [("eager", "off")] + [("fast", t) for t in train_fast]
            for path, fpath in paths:
                b2b = None
                PROFILE.clear()
                if args.profile_dir and path == "fast" and mode != "predict":
                    os.makedirs(args.profile_dir, exist_ok=True)
                    PROFILE.update(dir=args.profile_dir, name=f"profile_{label}_{mode}_b{batch}")
                if mode == "train":
                    t, peak, first = time_train(m, x, fpath, args.repeats)
                elif mode == "predict":
                    t, peak, first = time_predict(m, x.cpu(), path, args.repeats, device)
                    fpath = resolve_fast("auto", device, x.numel()) if path == "fast" else "off"
                else:
                    t, peak, first, b2b = time_inference(m, x, path, args.repeats)
                    fpath = resolve_fast("auto", device, x.numel()) if path == "fast" else "off"
                cps = batch / (t.median_ms / 1e3)
                mult = 3 if mode == "train" else 1   # forward + backward ~ 3x the forward FLOPs
                row = dict(meta, model=label, params_M=round(params, 2), path=f"{path}:{fpath}",
                           mode=mode, batch=batch, frames=frames, mel_bins=mel,
                           ms=round(t.median_ms, 4), ms_p10=round(t.p10_ms, 4),
                           ms_p90=round(t.p90_ms, 4), clips_per_s=round(cps, 1),
                           peak_MiB=round(peak, 1), gflops_per_clip=round(flops / 1e9, 2),
                           tflops=round(mult * flops * cps / 1e12, 2),
                           first_call_s=round(first, 1),
                           note=f"fast-vs-eager bf16 logits rel {bf16_err:.1e}; "
                                f"fast bf16 vs eager fp32 rel {fp32_err:.1e}")
                if mode == "inference" and batch == big:
                    row.update(floor_ms=round(floor_ms, 3),
                               floor_bytes_per_clip=int(bytes32 / 32))
                if label == BASELINE:   # its best fast path is the "fast" baseline
                    base[(mode, batch, path)] = max(base.get((mode, batch, path), 0.0), cps)
                    if b2b:
                        base[(mode, batch, path, "b2b")] = batch / (b2b / 1e3)
                for bp in ("eager", "fast"):
                    b = base.get((mode, batch, bp))
                    row[f"ratio_vs_ast_{bp}"] = round(cps / b, 3) if b else ""
                if b2b:
                    b = base.get((mode, batch, "eager", "b2b"))
                    row.update(ms_back_to_back=round(b2b, 4),
                               ratio_back_to_back_vs_ast_eager=round(batch / (b2b / 1e3) / b, 3) if b else "")
                w.writerow(row)
                f.flush()
                summary.append(row)
                log(f"{label:14s} {mode:9s} B={batch:<3d} {path:5s} {t.median_ms:9.3f} ms "
                    f"{cps:8.1f} clips/s peak {peak:8.0f} MiB first {first:6.1f} s "
                    f"vs AST eager {row['ratio_vs_ast_eager']} fast {row['ratio_vs_ast_fast']}"
                    + (f"; back to back {b2b:.3f} ms, vs AST eager's {row['ratio_back_to_back_vs_ast_eager']}"
                       if b2b else ""))
        del m, x1, x32
        if device.type == "cuda":
            torch.cuda.empty_cache()
    f.close()
    log("\nmodel          mode      B   path           ms   clips/s  xAST(eager) xAST(fast)")
    for r in summary:
        log(f"{r['model']:14s} {r['mode']:9s} {r['batch']:<3d} {r['path']:13s} {r['ms']:9.3f} "
            f"{r['clips_per_s']:8.1f} {r['ratio_vs_ast_eager']!s:>10} {r['ratio_vs_ast_fast']!s:>10}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
