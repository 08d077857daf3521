"""Training the classifiers' shipped parts: heads, thresholds, early exits, LoRA deltas (torch).

``seed.py`` (the shipped seed examples and the labels of each kind) · ``manifest.py`` (the training
sets under ``--data-dir`` and the validation split) · ``labels.py`` (our labels of hh-rlhf, by row
and digest) · ``decontaminate.py`` (training rows that repeat an evaluation text) · ``fit.py`` (the
heads' recipe) · ``calibration.py`` (thresholds and cascade margins on validation) · ``train.py``
(``train``, ``calibrate``, ``calibrate-fusion``) · ``exits.py`` (``train-exit``) · ``finetune.py``
and ``lora.py`` (the encoder's LoRA deltas).

Nothing here is imported when serving. The submodules are imported by name (this package
re-exports nothing, so that importing one does not import the rest).
"""
