"""Reliability promises, through the public entry points: input contracts of `predict`, atomic and
repairable run directories, runs that refuse to clobber other results, checked configurations and
checksummed checkpoints. Tiny models and synthetic tensors only."""
import pytest
import torch
from torch import nn

from dasslib import models as M
from dasslib import inference
from dasslib.inference import predict

# ---------------------------------------------------------------- predict: input contracts
AST_TINY = dict(embed_dim=16, depth=1, num_heads=2, input_fdim=32, input_tdim=64, num_classes=3)
DASS_TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), num_classes=3)


@pytest.fixture(scope="module")
def ast_model():
    torch.manual_seed(0)
    return M.create("ast_tiny", **AST_TINY).eval()


@pytest.fixture(scope="module")
def dass_model():
    torch.manual_seed(0)
    return M.create("dass_small", **DASS_TINY).eval()


def test_predict_knows_the_mel_bins_of_ast_and_aum(ast_model):
    assert inference.expected_mel_bins(ast_model) == 32
    assert inference.expected_mel_bins(M.create("aum_tiny", depth=1, embed_dim=16, input_fdim=48, num_classes=3)) == 48
    assert predict(ast_model, torch.randn(64, 32)).shape == (3,)


def test_predict_rejects_a_different_mel_count(ast_model):
    with pytest.raises(ValueError, match=r"expects 32 mel bins: expected \(T, 32\) or \(B, T, 32\)"):
        predict(ast_model, torch.randn(2, 64, 16))


def test_predict_rejects_a_transposed_fbank(ast_model, dass_model):
    with pytest.raises(ValueError, match="looks transposed"):
        predict(ast_model, torch.randn(32, 64))
    # DASS runs on any width, but no fbank is 1024 mel bins wide
    with pytest.raises(ValueError, match="transposed fbank"):
        predict(dass_model, torch.randn(128, 1024))


def test_predict_rejects_a_raw_waveform(ast_model, dass_model):
    for model in (ast_model, dass_model):
        with pytest.raises(ValueError, match="raw waveform"):
            predict(model, torch.randn(1, 160000))
    with pytest.raises(TypeError, match="floating-point fbank"):
        predict(dass_model, torch.zeros(1, 16000, dtype=torch.int16))


def test_predict_checks_declared_mel_bins_through_wrappers(dass_model):
    wrapped = nn.Sequential()
    wrapped.module = dass_model  # as DistributedDataParallel / DataParallel hold it
    dass_model.num_mel_bins = 64
    try:
        assert inference.expected_mel_bins(wrapped) == 64
        with pytest.raises(ValueError, match="expects 64 mel bins"):
            predict(dass_model, torch.randn(64, 128))
        assert predict(dass_model, torch.randn(64, 64)).shape == (3,)
    finally:
        del dass_model.num_mel_bins


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_predict_rejects_non_finite_input(ast_model, bad):
    x = torch.randn(2, 64, 32)
    x[1, 5, 3] = bad
    with pytest.raises(ValueError, match="1 non-finite value"):
        predict(ast_model, x)


def test_predict_rejects_non_float_dtypes(ast_model):
    for dtype in (torch.int64, torch.bool, torch.complex64):
        with pytest.raises(TypeError, match=f"got dtype {dtype}"):
            predict(ast_model, torch.ones(64, 32, dtype=dtype))
    assert predict(ast_model, torch.randn(64, 32, dtype=torch.float64)).dtype == torch.float32
