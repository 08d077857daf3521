"""Measuring the classifiers: the evaluation-only sets (``evalsets.py``, never trained on), the
metrics (``metrics.py``), the scoring of a configuration on them (``evaluate.py``, ``railguard
classifiers eval``), and the disk cache of window embeddings that evaluation and training share
(``embeddings.py``). The trainer's gate and the assistant's evaluation reuse the sets.

Nothing here is imported when serving; the submodules are imported by name.
"""
