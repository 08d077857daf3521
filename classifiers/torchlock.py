"""One lock for building torch models in this process.

transformers' ``from_pretrained(dtype=...)`` sets torch's *default dtype* for the whole process while it
builds a model. Another thread that builds a module at that moment gets tensors of the wrong dtype: at a
gateway's first start the classifiers' ONNX export ran beside the local model's bf16 load, and the
exported encoder or the probe came out partly bf16 (a dtype error, or silently different scores).
Every place in railguard that builds torch modules or exports them holds this lock.
"""

from __future__ import annotations

import threading

MODEL_BUILD_LOCK = threading.RLock()
