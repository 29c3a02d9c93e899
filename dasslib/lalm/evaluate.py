"""Evaluation without downloads: classification by text similarity, captioning by CIDEr.

The paper's protocol: caption each clip ("write an audio caption describing the sound"), embed
the caption and every ``"sound of " + label`` with a text encoder, take cosine similarities;
single-label sets score the argmax (accuracy), multi-label sets use the similarities as scores
(mAP), both through :func:`dasslib.metrics.evaluate`.

Text encoders: :class:`WordLlamaEncoder` (the 256-d static embeddings that the ``wordllama``
wheel ships, MIT; loaded from the installed package files with downloads disabled) or
:class:`LocalSentenceEncoder` (any local transformers encoder folder, mean-pooled, to follow
the paper's sentence encoder when its weights are at hand).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from dasslib.metrics import evaluate

__all__ = ["WordLlamaEncoder", "LocalSentenceEncoder", "text_encoder", "label_scores",
           "similarity_metrics", "cider", "normalize_caption"]


class WordLlamaEncoder:
    """``wordllama``'s l2_supercat 256-d embeddings from the installed package, no download.

    ``WordLlama.load()`` looks for the tokenizer in a ``tokenizer/`` folder while the wheel
    ships it under ``tokenizers/``, and would then download it; the files are read directly."""

    def __init__(self, config: str = "l2_supercat", dim: int = 256):
        import wordllama
        from safetensors import safe_open
        from wordllama import WordLlama
        from wordllama.inference import WordLlamaInference
        root = Path(wordllama.__file__).parent
        weights = root / "weights" / f"{config}_{dim}.safetensors"
        tokenizer = root / "tokenizers" / f"{config}_tokenizer_config.json"
        for f in (weights, tokenizer):
            if not f.is_file():
                raise FileNotFoundError(f"wordllama file {f.name} is not in the installed package")
        with safe_open(str(weights), framework="np", device="cpu") as f:
            emb = f.get_tensor("embedding.weight")
        self.model = WordLlamaInference(emb, WordLlama.load_tokenizer(tokenizer, hf_model_id=None))
        self.name = f"wordllama-{config}-{dim}"

    def embed(self, texts) -> np.ndarray:
        """texts (list of N str) -> (N, dim) float32, unit norm."""
        return _unit(np.asarray(self.model.embed(list(texts)), dtype=np.float32))


class LocalSentenceEncoder:
    """A local transformers encoder folder (e.g. a sentence-transformers model): mean of the
    last hidden states over real tokens, unit norm. Nothing is downloaded."""

    def __init__(self, folder, device: str = "cpu"):
        import torch
        from transformers import AutoModel, AutoTokenizer
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"sentence encoder folder {folder} does not exist")
        self.tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.device, self.torch, self.name = device, torch, folder.name

    def embed(self, texts) -> np.ndarray:
        torch = self.torch
        batch = self.tok(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        with torch.no_grad():
            h = self.model(**batch).last_hidden_state
        m = batch["attention_mask"][..., None].to(h.dtype)
        return _unit(((h * m).sum(1) / m.sum(1).clamp(min=1)).float().cpu().numpy())


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def text_encoder(folder=None):
    """:class:`LocalSentenceEncoder` of ``folder`` if given, else :class:`WordLlamaEncoder`."""
    return LocalSentenceEncoder(folder) if folder else WordLlamaEncoder()


def label_scores(texts, label_names, encoder, template: str = "sound of {}") -> np.ndarray:
    """Cosine similarity (N, C) between each generated text and each ``template`` label."""
    t = encoder.embed(list(texts))
    lab = encoder.embed([template.format(n) for n in label_names])
    return t @ lab.T


def similarity_metrics(scores, targets, multi_label: bool) -> dict:
    """Multi-label: mAP of the similarities against multi-hot ``targets`` (N, C); single-label:
    accuracy of the argmax against class indices (N,) (and mAP)."""
    if multi_label:
        return evaluate(scores, targets, task="multilabel")
    return evaluate(scores, targets, task="multiclass")


def normalize_caption(text: str) -> str:
    """Lower case, punctuation removed (a stand-in for the PTB tokenizer, which needs Java)."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def cider(references, candidates) -> tuple:
    """CIDEr-D of ``candidates`` (list of N str) against ``references`` (list of N lists of
    str) with ``pycocoevalcap``'s pure-Python scorer, on :func:`normalize_caption` tokens.
    Returns (corpus score, per-item scores (N,))."""
    try:
        from pycocoevalcap.cider.cider import Cider
    except ImportError as e:
        raise ImportError("CIDEr needs pycocoevalcap (pip install pycocoevalcap)") from e
    if len(references) != len(candidates) or not candidates:
        raise ValueError(f"{len(candidates)} candidates for {len(references)} reference lists")
    refs = {i: [normalize_caption(r) for r in rs] for i, rs in enumerate(references)}
    hyps = {i: [normalize_caption(c) or "empty"] for i, c in enumerate(candidates)}
    score, per = Cider().compute_score(refs, hyps)
    return float(score), np.asarray(per, dtype=float)
