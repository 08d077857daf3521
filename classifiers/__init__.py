"""Safety classifiers: text -> harm categories, jailbreak / prompt-injection, PII, language.

    config = ClassifiersConfig()                 # or from the gateway's settings
    classifier = SafetyClassifier.load(config)   # builds the ONNX encoder into the cache once, then opens it
    [result] = classifier.score(["some text"])   # thread-safe; call from a worker thread
    result.flagged("unsafe"), result.to_openai(), result.pii, result.language

    ClassifiersConfig(fuse=FusedEncoder())       # more accurate, slower: + a probe on gemma-3-270m

This package imports nothing from the rest of railguard, and torch only to build or train. Its
modules at the top serve (no torch); ``export/`` builds the ONNX artefacts they open, ``training/``
trains the shipped parts, ``evaluation/`` measures them, ``cli/`` is ``railguard classifiers``.
"""

from classifiers.built import BuiltArtifacts
from classifiers.config import ClassifiersConfig, FusedEncoder
from classifiers.export import build
from classifiers.pii import PiiSpan, find_pii, redact
from classifiers.runtime import SafetyClassifier
from classifiers.scores import TextScores
from classifiers.taxonomy import CATEGORIES, OPENAI_CATEGORIES, to_llama_guard, to_openai

__all__ = [
    "CATEGORIES",
    "OPENAI_CATEGORIES",
    "BuiltArtifacts",
    "ClassifiersConfig",
    "FusedEncoder",
    "PiiSpan",
    "SafetyClassifier",
    "TextScores",
    "build",
    "find_pii",
    "redact",
    "to_llama_guard",
    "to_openai",
]
