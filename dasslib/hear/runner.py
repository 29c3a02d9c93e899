"""``python -m dasslib.hear.runner dasslib.hear [options]``: the HEAR kit's embedding runner
(``heareval.embeddings.runner``, same arguments) with dasslib imported first.

The kit's runner imports TensorFlow before the embedding module; importing Triton (which torch and
timm load) after TensorFlow 2.21 segfaults, so this imports dasslib, and with it Triton, before
handing over to the kit.
"""
import runpy

import timm  # noqa: F401  (timm and torch, and Triton through dasslib, before the kit loads TensorFlow)

import dasslib.hear  # noqa: F401

if __name__ == "__main__":
    runpy.run_module("heareval.embeddings.runner", run_name="__main__", alter_sys=True)
