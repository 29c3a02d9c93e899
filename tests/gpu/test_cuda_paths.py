"""Code that only runs on a GPU, checked on a GPU: the Triton scan kernels compiled for the device (the
CPU tests run them in Triton's interpreter, which takes other branches, e.g. the fast log1p of softplus),
the in-place SS2D scan, the compiled and graph-replayed paths, inference's CUDA memory paths and autocast
training. Skipped without CUDA (so in CI). Run on the GPU machine, log committed under results/gpu/tests/:

    python -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee results/gpu/tests/gpu_tests_<date>.log
"""
import math

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
TINY_DASS = dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128))


@pytest.fixture(autouse=True)
def exact_fp32():
    """fp32 matmuls in fp32 (no TF32) for the comparisons against float64 / eager fp32."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def scan_inputs(b, d, L, N, G, dtype, z=False, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)

    def r(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=g, device="cuda") * scale + shift

    # delta spans softplus's three regimes: far below 0 (log1p series), moderate, above 20 (linear)
    raw = r(b, d, L, scale=4.0, shift=-2.0)
    raw[..., ::97] = 25.0
    raw[..., 1::89] = -30.0
    return dict(u=r(b, d, L).to(dtype), delta=raw.to(dtype), A=-torch.exp(r(d, N, scale=0.5)),
                B=r(b, G, N, L).to(dtype), C=r(b, G, N, L).to(dtype), D=r(d), z=r(b, d, L).to(dtype) if z else None,
                delta_bias=r(d, scale=0.5))


SHAPES = {  # (b, d, L, N, G, z): the model shapes of the speed issues, scaled down in width
    "dass": (2, 96, 4096, 1, 4, False),
    "dass_long": (1, 64, 131072, 1, 4, False),
    "aum": (2, 96, 513, 16, 1, True),
    "ssam": (2, 96, 801, 24, 1, True),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_triton_scan_forward_and_backward_against_float64(shape, dtype):
    from dasslib.scans import selective_scan
    from dasslib.scans.reference import selective_scan_ref

    b, d, L, N, G, z = SHAPES[shape]
    args = scan_inputs(b, d, L, N, G, dtype, z)
    tri = {k: None if v is None else v.clone().requires_grad_(True) for k, v in args.items()}
    ref = {k: None if v is None else v.detach().double().requires_grad_(True) for k, v in args.items()}
    y = selective_scan(**tri, delta_softplus=True, backend="triton")
    yr = selective_scan_ref(**ref, delta_softplus=True, compute_dtype=torch.float64)
    assert y.dtype == dtype and y.shape == yr.shape
    gy = torch.randn(yr.shape, generator=torch.Generator(device="cuda").manual_seed(5), device="cuda",
                     dtype=torch.float64)
    (yr * gy).sum().backward()
    (y.double() * gy).sum().backward()
    tol_y, tol_g = (2e-6, 5e-5) if dtype == torch.float32 else (1e-2, 3e-2)  # bf16 output: 2**-8 steps
    errs = {"y": rel(y, yr), **{k: rel(tri[k].grad, ref[k].grad) for k, v in args.items() if v is not None}}
    bad = {k: e for k, e in errs.items() if not e < (tol_y if k == "y" else tol_g)}
    assert not bad, errs


def _dass(seed=0, **kw):
    from dasslib.models import create

    torch.manual_seed(seed)
    return create("dass_small", num_classes=7, **{**TINY_DASS, **kw}).to(CUDA)


def test_ss2d_in_place_scan_matches_the_copies_in_inference_and_training():
    fused = _dass(scan_backend="triton")
    plain = _dass(scan_backend="torch", fused_scan=False, fused_scan_train=False)
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(2, 256, 128, device=CUDA)
    with torch.no_grad():
        assert rel(fused.eval()(x), plain.eval()(x)) < 1e-5
    fused.train(), plain.train()
    for m in (fused, plain):
        for mod in m.modules():
            if hasattr(mod, "drop_prob"):
                mod.drop_prob = 0.0
        m(x).square().mean().backward()
    worst = max(rel(a.grad, b.grad) for a, b in zip(fused.parameters(), plain.parameters()) if b.grad is not None)
    assert worst < 1e-4, worst


@pytest.mark.parametrize("d,h,w", [(96, 256, 32), (192, 128, 16), (384, 64, 8), (768, 32, 4), (100, 30, 7)])
def test_ss2d_merge_kernel_matches_torch(d, h, w):
    """The cross-merge + out-norm kernel at DASS-Small's four stages (and a grid of no tile multiple)."""
    from dasslib.scans.ss2d_merge import ss2d_merge_norm, ss2d_merge_norm_reference

    g = torch.Generator(device="cuda").manual_seed(0)
    ys = torch.randn(3, 4, d, h * w, generator=g, device=CUDA) * 2 + 0.5
    wt, bs = torch.randn(d, generator=g, device=CUDA), torch.randn(d, generator=g, device=CUDA)
    want = ss2d_merge_norm_reference(ys.double(), wt.double(), bs.double(), 1e-5, h, w)
    assert rel(ss2d_merge_norm(ys, wt, bs, 1e-5, h, w), want) < 1e-6
    assert rel(ss2d_merge_norm(ys, wt, bs, 1e-5, h, w, torch.bfloat16), want) < 5e-3


@pytest.mark.parametrize("tiles", [None, (64, 4, True, False), (128, 8, False, True), (128, 8, True, True)])
def test_stem_kernel_matches_torch_and_autocast(tiles):
    """The stem kernel (conv from one channel + LayerNorm + GELU) at DASS-Small's 10 s input, fp32 and under
    bf16 autocast against the model's own layers: the default, the (B, F, T) read and the tensor-core form."""
    from dasslib.models import create

    torch.manual_seed(0)
    m = create("dass_small").to(CUDA).eval()
    m.stem_tiles = tiles
    x = torch.randn(4, 1024, 128, device=CUDA)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False          # the reference's convolutions in full fp32
    try:
        with torch.no_grad():
            want = m.patch_embed(x.unsqueeze(1).transpose(2, 3))
            m.stem_kernel = True
            got = m._stem_forward(x)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert rel(got, want) < 1e-5
    with torch.no_grad():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            m.stem_kernel = False
            want_bf = m.patch_embed(x.unsqueeze(1).transpose(2, 3))
            m.stem_kernel = True
            got_bf = m._stem_forward(x)
    assert got_bf.dtype == want_bf.dtype and rel(got_bf.float(), want_bf.float()) < 1e-2


@pytest.mark.parametrize("R", [6, 12])
def test_ss2d_dtproj_scan_matches_the_materialised_delta(R):
    """The dt projection inside the scan (SS2D.dtproj_in_scan) at DASS-Small's stage-1 width, bf16 u and
    x_dbl: against the scan of the delta projected in fp32 (the in-scan sum skips delta's bf16 rounding)."""
    from dasslib.scans.triton_backend import ss2d_scan_dtproj, ss2d_scan_triton

    g = torch.Generator(device="cuda").manual_seed(0)
    b, d, L, N = 4, 96, 8192, 1
    x_dbl = torch.randn(b, 4, R + 2 * N, L, generator=g, device=CUDA).bfloat16()
    u2 = torch.randn(b, 2, d, L, generator=g, device=CUDA).bfloat16()
    W = (0.3 * torch.randn(4, d, R, generator=g, device=CUDA)).bfloat16()
    A = -torch.exp(torch.randn(4 * d, N, generator=g, device=CUDA))
    D, dtb = torch.randn(4 * d, generator=g, device=CUDA), torch.randn(4 * d, generator=g, device=CUDA)
    B, C = x_dbl[:, :, R:R + N].contiguous(), x_dbl[:, :, R + N:].contiguous()
    delta = torch.einsum("bkrl,kdr->bkdl", x_dbl[:, :, :R].float(), W.float()).reshape(b, 4 * d, L)
    with torch.no_grad():
        want = ss2d_scan_triton(u2.float(), delta, A, B.float(), C.float(), D=D, delta_bias=dtb)
        got = ss2d_scan_dtproj(u2, x_dbl, W, A, B, C, D=D, delta_bias=dtb, out_dtype=torch.float32)
    assert rel(got, want) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("b", [2, 32], ids=["rows-bwd", "many-rows"])
def test_fobi_scan_matches_the_flipped_copies(b, dtype):
    """AuM's Fo-Bi by index arithmetic (fobi_scan_triton) against the torch scan of flipped copies in
    float64, forward and gradients, at AuM's length (513, unaligned rows) and N = 16; b = 32 is
    enough rows (2 x 32 x 96) for the kernel choice of the models: the sequential forward."""
    from dasslib.scans.layouts import bidirectional_selective_scan

    args = scan_inputs(b, 96, 513, 16, 1, dtype, z=True)
    A_b = -torch.exp(torch.randn(96, 16, device=CUDA, generator=torch.Generator(device="cuda").manual_seed(3)))
    tri = {k: None if v is None else v.clone().requires_grad_(True) for k, v in args.items()}
    ref = {k: None if v is None else v.detach().double().requires_grad_(True) for k, v in args.items()}
    y = bidirectional_selective_scan(**tri, A_b=A_b, delta_softplus=True, backend="triton")
    yr = bidirectional_selective_scan(**ref, A_b=A_b.double(), delta_softplus=True, backend="torch")
    gy = torch.randn(yr.shape, generator=torch.Generator(device="cuda").manual_seed(5), device="cuda",
                     dtype=torch.float64)
    (yr * gy).sum().backward()
    (y.double() * gy).sum().backward()
    tol_y, tol_g = (2e-6, 5e-5) if dtype == torch.float32 else (1e-2, 3e-2)
    errs = {"y": rel(y, yr), **{k: rel(tri[k].grad, ref[k].grad) for k, v in args.items() if v is not None}}
    bad = {k: e for k, e in errs.items() if not e < (tol_y if k == "y" else tol_g)}
    assert not bad, errs


@pytest.mark.parametrize("name", ["dass_small", "aum_tiny", "ssam_tiny", "ast_tiny"])
@pytest.mark.parametrize("mode", ["compile", "graphs", "graphs_whole"])
def test_fast_forward_matches_eager_in_fp32(name, mode, monkeypatch):
    """compile, inductor's CUDA-graph trees and the whole-forward capture (GRAPH_CAPTURE "whole")."""
    import dasslib.fast as fast
    from dasslib.models import create

    if mode == "graphs_whole":
        monkeypatch.setattr(fast, "GRAPH_CAPTURE", "whole")
        mode = "graphs"
    torch.manual_seed(0)
    kw = TINY_DASS if name == "dass_small" else {}
    model = create(name, num_classes=7, **kw).to(CUDA).eval()
    x = torch.randn(3, 1024 if name != "ssam_tiny" else 1000, 128 if name != "ssam_tiny" else 80, device=CUDA)
    ff = fast.FastForward(model, mode)
    with torch.no_grad():
        eager = model(x)
        got = ff(x).clone()
    assert ff.failed is None, ff.failed       # the compiled path ran (a failure falls back to eager)
    assert rel(got, eager) < 1e-4


def test_whole_graph_replay_reads_weights_loaded_in_place(monkeypatch):
    """The captured forward (GRAPH_CAPTURE "whole") replayed on new inputs and after load_state_dict (which
    copies into the same tensors) gives eager's logits each time, under bf16 autocast and inference mode as
    predict runs it."""
    import dasslib.fast as fast
    from dasslib.models import create

    monkeypatch.setattr(fast, "GRAPH_CAPTURE", "whole")
    torch.manual_seed(0)
    model = create("dass_small", num_classes=7, **TINY_DASS).to(CUDA).eval()
    other = create("dass_small", num_classes=7, **TINY_DASS).to(CUDA).eval()
    ff = fast.FastForward(model, "graphs")
    g = torch.Generator(device="cuda").manual_seed(1)
    for step in range(3):
        if step == 2:
            model.load_state_dict(other.state_dict())
        x = torch.randn(4, 1024, 128, generator=g, device=CUDA)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            got = ff(x).float().clone()
            want = model(x).float()
        assert rel(got, want) < 2e-2, step
    assert len(ff.captured) == 1 and ff.failed is None


def test_graph_replayed_training_steps_match_eager():
    from dasslib.fast import compile_for_training

    losses = {}
    for fast in ("off", "graphs"):
        model = _dass(seed=1, drop_path=0.0, scan_backend="triton").train()
        step_model = compile_for_training(model, fast, CUDA)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        g = torch.Generator(device="cuda").manual_seed(2)
        out = []
        for _ in range(3):
            x = torch.randn(4, 256, 128, generator=g, device=CUDA)
            y = (torch.rand(4, 7, generator=g, device=CUDA) > 0.5).float()
            if fast == "graphs":
                torch.compiler.cudagraph_mark_step_begin()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(step_model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append(loss.item())
        losses[fast] = out
    assert losses["off"] == pytest.approx(losses["graphs"], rel=1e-5), losses


def test_predict_on_cuda_matches_the_cpu_and_runs_the_fast_path():
    from dasslib.inference import predict

    model = _dass().eval()
    x = torch.randn(3, 1024, 128)
    on_cpu = predict(model.cpu(), x, device="cpu", dtype=torch.float32)
    on_gpu = predict(model.to(CUDA), x, device="cuda", dtype=torch.float32, fast="off")
    fast = predict(model, x, device="cuda", dtype=torch.float32, fast="graphs")
    assert rel(on_gpu, on_cpu) < 1e-4 and rel(fast, on_gpu) < 1e-4
    bf16 = predict(model, x, device="cuda")            # the default: bf16 autocast, fast path "auto"
    assert rel(bf16, on_gpu) < 3e-2


def test_cuda_out_of_memory_is_input_too_long_with_a_measured_fit():
    from dasslib.inference import InputTooLongError, max_length_that_fits, predict
    from dasslib.models import create

    model = create("dass_small", num_classes=7).to(CUDA).eval()
    fit = max_length_that_fits(model, 128, "cuda")
    assert fit.max_frames > 100_000 and fit.probes and all(p is not None for _, p in fit.probes)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(2 * 2**30 / total)   # a 2 GiB card
    try:
        capped = max_length_that_fits(model, 128, "cuda")
        assert capped.max_frames < fit.max_frames / 5
        with pytest.raises(InputTooLongError, match="largest length"):
            predict(model, torch.randn(1, 20 * capped.max_frames, 128), device="cuda", fast="off")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_training_on_cuda_learns_and_resumes(amp, tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from dasslib.train import TrainConfig, fit

    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 256, 64, generator=g)
    y = (x[:, :, :7].mean(1) > 0).float()           # learnable from the input
    train = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8, shuffle=True)
    ev = DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8)
    cfg = dict(epochs=4, lr=1e-3, warmup_steps=2, warmup_every=1, wa_start=2, amp=amp, device="cuda",
               progress=False, grad_clip=1.0)
    result = fit(_dass(), train, ev, TrainConfig(**cfg), tmp_path / "whole")
    losses = result.history["train_loss"].tolist()
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]

    def stop(info):
        if info.epoch == 2 and info.batch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_dass(), train, ev, TrainConfig(**cfg), tmp_path / "cut", on_step=stop)
    resumed = fit(_dass(), train, ev, TrainConfig(**cfg), tmp_path / "cut")
    assert resumed.history["train_loss"].tolist() == pytest.approx(losses, rel=1e-4)


def test_mamba_lm_step_replayed_as_a_cuda_graph_equals_eager_steps():
    """ssLALM's generation step (dasslib.lalm.graphs.GraphedStep) captured once and replayed, against the
    eager step, over 24 tokens at batch 2."""
    from dasslib.lalm.graphs import GraphedStep
    from dasslib.lalm.lm import tiny_mamba

    torch.manual_seed(0)
    lm = tiny_mamba(300, 64, 3).to(CUDA).eval()
    ids = torch.randint(0, 300, (2, 40), device=CUDA)
    with torch.no_grad():
        _, state = lm(input_ids=ids[:, :16], return_state=True)
        stepper = GraphedStep(lm, state, ids[:, 16])
        assert stepper.graph is not None
        for t in range(16, 40):
            want, state = lm.step(ids[:, t], state)
            assert rel(stepper(ids[:, t]), want) < 1e-5
