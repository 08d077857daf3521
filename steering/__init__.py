"""Model internals for the local backend: steering vectors and constrained decoding.

Modules (this package imports nothing of the rest of railguard; torch loads only where needed):

* `types`: `SteeringVector` (layer, vector, positions, mode): what a hook applies.
* `hooks`: `BatchSteering` (per-row, per-phase), `steer()` and `ablate()` context managers.
* `extract`: difference of means over contrastive prompt sets, at every layer.
* `evaluate`: refusal rates and perplexity with and without a vector; layer/scale sweeps.
* `vectors`: `StoredVector` (safetensors + JSON sidecar) and `VectorStore`; `gguf`: the llama.cpp
  control-vector format.
* `vocabulary`, `constrain`: JSON schema / regex / choice on outlines-core, complete in budget.
* `cli`: `railguard steer ...`.
"""
