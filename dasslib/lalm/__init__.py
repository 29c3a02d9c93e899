"""ssLALM (issue #19): a state-space large audio language model.

- :mod:`.model`: the projector, the audio-token interface on a DASS / AST encoder, ``SSLALM``
  (forward / generate / set_stage / trainable-only checkpoints) and LTU's four ``STAGES``;
- :mod:`.mamba_lm`: a Mamba causal LM on :mod:`dasslib.scans` in transformers' layout;
- :mod:`.lm`: the LLaMA hybrid baseline (transformers), LoRA (peft), tokenizers;
- :mod:`.data`: OpenAQA / LTU json, templated QA from clip labels;
- :mod:`.evaluate`: text-similarity classification (wordllama), CIDEr;
- :mod:`.train`: the stage training loop.

Kept out of the classifier registry (:mod:`dasslib.models`): these are not fbank classifiers.
"""
from .lm import (
                 HFCausalLM,
                 apply_lora,
                 count_lora_parameters,
                 load_lm,
                 load_tokenizer,
                 tiny_llama,
                 tiny_mamba,
                 train_bpe_tokenizer,
)
from .mamba_lm import MambaLM, MambaLMConfig
from .model import PROMPT, SSLALM, STAGES, AudioEncoder, AudioProjector, format_prompt

__all__ = ["AudioEncoder", "AudioProjector", "SSLALM", "STAGES", "PROMPT", "format_prompt",
           "MambaLM", "MambaLMConfig", "HFCausalLM", "apply_lora", "count_lora_parameters",
           "load_lm", "load_tokenizer", "tiny_llama", "tiny_mamba", "train_bpe_tokenizer"]
