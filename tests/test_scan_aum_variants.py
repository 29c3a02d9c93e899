"""AuM on the Triton scan against the same weights on the torch scan (CPU, Triton interpreter), for every
block type (Fo-Fo, Fo-Bi, Bi-Bi) and CLS position (head, middle, tail) at an odd token count: logits and
every parameter's gradient. On the Triton backend Fo-Bi and Bi-Bi scan their backward direction by index
arithmetic (layouts "fobi" / "bibi"); the scan runs over a length padded to 16 ("always") or, for the
bidirectional blocks, also over the 7 steps as they are ("never")."""
from tests.interpreter_env import needs_fresh, only_in_a_shared_process, run_in_fresh_process  # noqa: I001

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.scan_helpers import rel as _rel  # noqa: E402

pytest.importorskip("triton")


@only_in_a_shared_process
def test_in_fresh_process():
    run_in_fresh_process(__file__)


CASES = [(b, c, "always") for b in ("none", "fo_bi", "bi_bi") for c in ("head", "mid", "tail")]
CASES += [("fo_bi", "mid", "never"), ("bi_bi", "mid", "never")]      # the scan over the 7 steps as they are


@needs_fresh
@pytest.mark.parametrize("bimamba,cls_position,scan_pad", CASES)
def test_aum_on_the_triton_scan_matches_the_torch_scan(bimamba, cls_position, scan_pad):
    from dasslib.models import create
    from dasslib.models.mamba_mixer import MambaMixer

    torch.manual_seed(0)
    kw = dict(depth=1, embed_dim=16, num_classes=5, d_state=5, bimamba=bimamba, cls_position=cls_position)
    tri = create("aum_tiny", scan_backend="triton", **kw)
    ref = create("aum_tiny", scan_backend="torch", **kw)
    ref.load_state_dict(tri.state_dict())
    for mod in tri.modules():
        if isinstance(mod, MambaMixer):
            mod.scan_pad = scan_pad
    seen = []
    for mod in ref.modules():
        if isinstance(mod, MambaMixer):
            mod.register_forward_hook(lambda mod, inputs, out: seen.append(inputs[0].shape[1]))
    x = torch.randn(1, 48, 32)
    for m in (tri, ref):
        m.train()
        for mod in m.modules():
            if hasattr(mod, "drop_prob"):
                mod.drop_prob = 0.0
    out_t, out_r = tri(x), ref(x)
    assert seen[0] == 7                      # 6 patches and the CLS: an odd length
    assert _rel(out_t, out_r) < 1e-5, _rel(out_t, out_r)
    out_r.square().mean().backward()
    out_t.square().mean().backward()
    worst = max((_rel(a.grad, b.grad), n) for (n, a), b in zip(tri.named_parameters(), ref.parameters())
                if b.grad is not None)
    assert worst[0] < 1e-4, worst
