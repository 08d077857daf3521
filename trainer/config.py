"""One config per training algorithm, in TRL's pattern: a dataclass whose fields carry their help text,
read from a YAML file and overridden by `--flag value` on the command line.

A key that is not a field, a value of the wrong type, or a file that cannot be read is a `ConfigError`
naming the cause, raised before anything is loaded or trained.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

__all__ = ["ConfigError", "DPOConfig", "NightlyConfig", "SFTConfig", "load_config", "parse_overrides"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A training config that cannot be used, with the reason."""


@dataclass(frozen=True)
class SFTConfig:
    """Supervised fine-tuning of a LoRA adapter on the local model (`railguard train sft`)."""

    # data
    data_dir: Path = field(
        default=Path("../shared/data"),
        metadata={
            "help": "The shared public data sets (../shared/data); alpaca and hh-rlhf are read from "
            "here by path"
        },
    )
    demos_dir: Path = field(
        default=Path("trainer/data/assistant/demos"),
        metadata={"help": "Our own demonstrations, <lang>.jsonl with `messages`"},
    )
    topics_file: Path = field(
        default=Path("trainer/data/instructions/topics.jsonl"),
        metadata={"help": "Our own source texts for generated instruction-following examples"},
    )
    data_file: Path | None = field(
        default=None,
        metadata={
            "help": "Train on this `messages` JSONL only (`railguard data build`'s sft.jsonl), instead "
            "of the assistant mix below"
        },
    )
    demo_repeats: int = field(
        default=2, metadata={"help": "How often each of our demonstrations is seen per epoch"}
    )
    instruction_examples: int = field(
        default=500, metadata={"help": "Generated instruction-following examples (verifiable constraints)"}
    )
    combined_instruction_examples: int = field(
        default=0,
        metadata={"help": "Generated examples with several constraints at once (layout, rewrite, measure)"},
    )
    alpaca_examples: int = field(
        default=400, metadata={"help": "AlpacaEval instructions with an answer cut to fit (0: none)"}
    )
    alpaca_max_words: int = field(
        default=150, metadata={"help": "Answers are cut at a paragraph boundary to at most this many words"}
    )
    hh_rlhf_refusals: int = field(
        default=120,
        metadata={"help": "hh-rlhf first turns labelled harmful whose chosen reply refuses (0: none)"},
    )
    validation_share: float = field(
        default=0.05, metadata={"help": "Share of each source held out for validation (by content hash)"}
    )
    max_length: int = field(
        default=512, metadata={"help": "Longest tokenized conversation; longer ones are left out, not cut"}
    )
    chat_template: Path | None = field(
        default=None,
        metadata={
            "help": "A Jinja chat template file to check against the one the gateway serves the model "
            "with (they must be byte-for-byte equal); default: that one"
        },
    )
    # model
    base_model: Path | None = field(
        default=None,
        metadata={
            "help": "A saved transformers model; default: the embedded gemma-3-270m converted under the cache"
        },
    )
    cache_dir: Path = field(
        default=Path("~/.cache/railguard"),
        metadata={"help": "railguard's cache (the converted model, run checkpoints)"},
    )
    init_adapter: Path | None = field(
        default=None,
        metadata={
            "help": "Start from this LoRA adapter's weights instead of a new one (a second stage; its lora_* "
            "settings then apply)"
        },
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "Linear layers that get LoRA matrices"},
    )
    # optimisation
    seed: int = field(default=42, metadata={"help": "Seeds data order, LoRA initialisation and dropout"})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the training split"})
    max_steps: int = field(
        default=-1, metadata={"help": "Stop after this many optimizer steps (-1: run the epochs)"}
    )
    batch_size: int = field(default=4, metadata={"help": "Conversations per step (per device)"})
    gradient_accumulation: int = field(default=2, metadata={"help": "Steps accumulated per optimizer update"})
    learning_rate: float = field(
        default=3e-4, metadata={"help": "Peak learning rate (cosine schedule with warm-up)"}
    )
    warmup_ratio: float = field(default=0.03, metadata={"help": "Share of steps warming up"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's)"})
    # output
    output_dir: Path = field(
        default=Path("gateway/defaults/adapters/assistant"),
        metadata={"help": "Where the finished adapter, its manifest and training log are written"},
    )
    run_dir: Path | None = field(
        default=None,
        metadata={
            "help": "Checkpoints of this run (default: <cache_dir>/runs/<output_dir name>); a rerun "
            "resumes the last"
        },
    )
    save_dtype: str = field(
        default="bfloat16", metadata={"help": "dtype of the saved LoRA weights: bfloat16 or float32"}
    )
    save_steps: int = field(default=25, metadata={"help": "Checkpoint every this many optimizer steps"})
    logging_steps: int = field(default=5, metadata={"help": "Log the loss every this many optimizer steps"})
    resume: bool = field(
        default=True, metadata={"help": "Resume from the last checkpoint in run_dir when there is one"}
    )

    @staticmethod
    def resolved(path: Path) -> Path:
        return path.expanduser()

    def resolved_cache(self) -> Path:
        return self.cache_dir.expanduser()

    def resolved_run_dir(self) -> Path:
        return (self.run_dir or self.resolved_cache() / "runs" / self.output_dir.name).expanduser()


@dataclass
class DPOConfig:
    """Preference optimisation (DPO) of the adapter in service on reviewed pairs (`railguard train dpo`).

    The adapter to improve is also the reference: training starts from its weights and the reference
    model is a frozen copy of it, so β measures how far the new adapter may move from what is served."""

    data: Path = field(
        default=Path("dpo.jsonl"),
        metadata={
            "help": "Preference pairs: prompt / chosen / rejected, as `railguard data build` writes them"
        },
    )
    init_adapter: Path = field(
        default=Path("gateway/defaults/adapters/assistant"),
        metadata={"help": "The adapter in service: trained on, and (frozen) the reference model"},
    )
    base_model: Path | None = field(
        default=None, metadata={"help": "A transformers checkpoint (default: the embedded gemma-3-270m)"}
    )
    cache_dir: Path = field(
        default=Path("~/.cache/railguard"), metadata={"help": "Where models are converted"}
    )
    beta: float = field(default=0.1, metadata={"help": "How strongly the reference holds the model back"})
    loss_type: str = field(default="sigmoid", metadata={"help": "TRL's DPO loss: sigmoid, ipo, hinge, ..."})
    max_length: int = field(default=512, metadata={"help": "Prompt + answer tokens kept per pair"})
    seed: int = field(default=42, metadata={"help": "Seeds data order and dropout"})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the pairs"})
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many optimizer steps (-1: epochs)"})
    batch_size: int = field(default=2, metadata={"help": "Pairs per step"})
    gradient_accumulation: int = field(default=2, metadata={"help": "Steps accumulated per update"})
    learning_rate: float = field(default=5e-6, metadata={"help": "Peak learning rate"})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's)"})
    output_dir: Path = field(
        default=Path("~/.cache/railguard/adapters/dpo"), metadata={"help": "Where the new adapter is written"}
    )
    run_dir: Path | None = field(
        default=None, metadata={"help": "Checkpoints (default: <cache_dir>/runs/<output_dir name>)"}
    )
    save_steps: int = field(default=25, metadata={"help": "Checkpoint every this many optimizer steps"})
    logging_steps: int = field(default=1, metadata={"help": "Log every this many optimizer steps"})
    resume: bool = field(default=True, metadata={"help": "Resume from the last checkpoint in run_dir"})

    @staticmethod
    def resolved(path: Path) -> Path:
        return path.expanduser()

    def resolved_run_dir(self) -> Path:
        return (self.run_dir or self.cache_dir / "runs" / self.output_dir.name).expanduser()


@dataclass(frozen=True)
class NightlyConfig:
    """The nightly loop (`railguard train nightly`): flagged records -> review queue -> AI labels -> data ->
    SFT -> DPO -> evaluation -> gate -> promote or reject. The gateway's own settings file says where the
    records, the review queue, the registry and the policy are (`settings`)."""

    settings: Path | None = field(
        default=None, metadata={"help": "The gateway's settings file (railguard.yaml): stores and policy"}
    )
    model: str = field(default="gemma-3-270m", metadata={"help": "The served model id the loop improves"})
    adapter_name: str = field(default="assistant", metadata={"help": "Registry name of the adapters"})
    data_dir: Path = field(
        default=Path("../shared/data"), metadata={"help": "Evaluation sets (decontamination, the gate)"}
    )
    label_limit: int = field(default=200, metadata={"help": "Items AI-labelled per run at most"})
    spot_check: float = field(
        default=0.1, metadata={"help": "Share of AI labels sent to the top of the queue for people"}
    )
    label_min_score: float = field(
        default=0.9,
        metadata={"help": "AI-label only items flagged at least this surely; the rest wait for people"},
    )
    teacher_url: str | None = field(
        default=None,
        metadata={"help": "An OpenAI-compatible endpoint that critiques and revises (default: the model)"},
    )
    teacher_model: str | None = field(default=None, metadata={"help": "The teacher's model id"})
    teacher_api_key_env: str = field(
        default="RAILGUARD_TEACHER_API_KEY", metadata={"help": "Environment variable holding its key"}
    )
    max_tokens: int = field(default=160, metadata={"help": "Tokens per generated answer"})
    general: int = field(
        default=60, metadata={"help": "Our demonstrations mixed into the SFT data against forgetting"}
    )
    sft_max_steps: int = field(default=60, metadata={"help": "SFT optimizer steps (0: no SFT stage)"})
    sft_learning_rate: float = field(default=1e-4, metadata={"help": "SFT learning rate"})
    dpo_max_steps: int = field(default=40, metadata={"help": "DPO optimizer steps (0: no DPO stage)"})
    dpo_learning_rate: float = field(default=5e-6, metadata={"help": "DPO learning rate"})
    beta: float = field(default=0.1, metadata={"help": "DPO beta"})
    batch_size: int = field(default=2, metadata={"help": "Examples per step"})
    max_length: int = field(default=384, metadata={"help": "Tokens per training example at most"})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's)"})
    eval_suites: list[str] = field(
        default_factory=lambda: ["harmbench-test", "xstest", "multijail"],
        metadata={"help": "Suites the candidate and the served adapter are compared on (model only)"},
    )
    eval_limit: int = field(default=48, metadata={"help": "Items per suite, spread over its groups"})
    drift_texts: int = field(
        default=40, metadata={"help": "Held-out ordinary answers for perplexity and KL (0: not measured)"}
    )
    max_perplexity_increase: float = field(
        default=0.05, metadata={"help": "Perplexity on ordinary text may rise at most this much (relative)"}
    )
    ifeval_limit: int = field(
        default=0, metadata={"help": "IFEval prompts each adapter answers (0: IFEval not measured)"}
    )
    ifeval_margin: float = field(
        default=0.02, metadata={"help": "IFEval prompt-level strict may fall at most this much (rate points)"}
    )
    harmful_margin: float = field(
        default=0.0, metadata={"help": "Harmful compliance may not rise beyond this (rate points)"}
    )
    over_refusal_margin: float = field(
        default=0.02, metadata={"help": "Over-refusal may rise at most this much (rate points)"}
    )
    improve: list[str] = field(
        default_factory=list, metadata={"help": "Suites on which harmful compliance must fall"}
    )
    min_items: int = field(
        default=1, metadata={"help": "Fewer labelled items than this: nothing to train on, exit 0"}
    )

    @staticmethod
    def resolved(path: Path) -> Path:
        return path.expanduser()


def load_config(cls: type[T], path: Path | None = None, overrides: dict[str, str] | None = None) -> T:
    """`cls` from a YAML mapping (if given) with `overrides` (strings, as from the command line) on top."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of settings")
        values.update(loaded)
    values.update(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(known: {', '.join(sorted(fields))})"
        )
    hints = get_type_hints(cls)
    coerced = {name: _coerce(name, value, hints[name]) for name, value in values.items()}
    return cls(**coerced)


def parse_overrides(args: list[str]) -> dict[str, str]:
    """`--lora-r 8 --seed=3` -> {"lora_r": "8", "seed": "3"}; anything else is a ConfigError."""
    overrides: dict[str, str] = {}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"expected --setting value, got {arg!r}")
        name, sep, value = arg[2:].partition("=")
        if not sep:
            if not rest:
                raise ConfigError(f"--{name} needs a value")
            value = rest.pop(0)
        overrides[name.replace("-", "_")] = value
    return overrides


def _coerce(name: str, value: Any, hint: Any) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        is_null = value is None or (isinstance(value, str) and value.lower() in ("null", "none", ""))
        if is_null and type(None) in get_args(hint):
            return None
        return _coerce(name, value, options[0])
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings, got {value!r}")
        return value
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            raise ValueError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is Path:
            if not isinstance(value, str | Path):
                raise ValueError
            return Path(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {getattr(hint, '__name__', hint)}, got {value!r}") from None
    return value
