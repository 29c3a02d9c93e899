"""ssLALM: a state-space large audio language model (docs/lalm.md).

- :mod:`.model`: the projector, the audio-token interface on a DASS / AST encoder, ``SSLALM``
  (forward / generate / set_stage / trainable-only checkpoints) and LTU's four ``STAGES``;
- :mod:`.mamba_lm`: a Mamba causal LM on :mod:`dasslib.scans` in transformers' layout;
- :mod:`.lm`: the LLaMA hybrid baseline (transformers), LoRA (peft), tokenizers;
- :mod:`.data`: OpenAQA / LTU json, templated QA from clip labels;
- :mod:`.evaluate`: text-similarity classification (wordllama), CIDEr;
- :mod:`.train`: the stage training loop.

Kept out of the classifier registry (:mod:`dasslib.models`): these are not fbank classifiers.
"""
from .._lazy import lazy_namespace

# names are imported from their submodules on first use: transformers and peft load only when needed
_EXPORTS = {
    "model": ("AudioEncoder", "AudioProjector", "SSLALM", "STAGES", "PROMPT", "format_prompt"),
    "mamba_lm": ("MambaLM", "MambaLMConfig"),
    "lm": ("HFCausalLM", "apply_lora", "count_lora_parameters", "load_lm", "load_tokenizer", "tiny_llama",
           "tiny_mamba", "train_bpe_tokenizer"),
}
__getattr__, __dir__, __all__ = lazy_namespace(__name__, _EXPORTS)
