"""The policy file's schema (YAML), validated strictly: a typo in a policy must fail at load, not in traffic.

A policy has a base, and overlays per language and per tenant (tenant wins over language, which wins over
the base). Overlays may change category actions and thresholds, add rules and allow-rules, and change the
refusal mode and messages.
"""

from __future__ import annotations

import logging
import re
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.policy.verdict import Action, Stage

RefusalMode = Literal["message", "error"]
FailMode = Literal["fail_open", "fail_closed"]
Text = Annotated[str, StringConstraints(min_length=1)]

log = logging.getLogger(__name__)


class PolicyError(ValueError):
    """A policy file that cannot be loaded; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Principle(_Strict):
    """A written principle that refusals cite. `text` maps a language code to the principle in that
    language (one plain string is the older form: cited as written in every language); `refusal` maps a
    language code to the principle's own message, used instead of the policy's refusal template."""

    text: Text | Annotated[dict[str, Text], Field(min_length=1)]
    refusal: dict[str, str] = Field(default_factory=dict)

    def text_in(self, language: str, default: str) -> str:
        if isinstance(self.text, str):
            return self.text
        return self.text.get(language) or self.text[default]


class SteerPolicy(_Strict):
    """The steering vector a `steer` action generates with (local backends only)."""

    vector: str = Field(min_length=1)
    scale: float = Field(1.0, ge=-16, le=16)


class GreyBand(_Strict):
    """Scores from `threshold` up to the category's own threshold: a milder action than the category's,
    typically `steer` (answer, with the refusal vector on) or `escalate`."""

    threshold: float = Field(ge=0, le=1)
    action: Action = Action.STEER
    principle: str | None = None
    steer: SteerPolicy | None = Field(None, description="Required when action is steer")

    @model_validator(mode="after")
    def _steer_needs_a_vector(self) -> GreyBand:
        _check_steer(self.action, self.steer)
        if self.action is Action.ALLOW:
            raise ValueError("a grey band that allows is no band: leave it out")
        return self


class CategoryPolicy(_Strict):
    action: Action = Action.REFUSE
    threshold: float | None = Field(
        None, ge=0, le=1, description="Default: the classifier's calibrated threshold (rules score 1.0)"
    )
    principle: str | None = None
    steer: SteerPolicy | None = Field(None, description="Required when action is steer")
    grey: GreyBand | None = Field(None, description="A band below `threshold` with a milder action")

    @model_validator(mode="after")
    def _steer_needs_a_vector(self) -> CategoryPolicy:
        _check_steer(self.action, self.steer)
        if self.grey is not None and self.threshold is not None and self.grey.threshold >= self.threshold:
            raise ValueError("a grey band's threshold must be below the category's threshold")
        return self


def _check_steer(action: Action, steer: SteerPolicy | None) -> None:
    if (action is Action.STEER) != (steer is not None):
        raise ValueError("action steer and a `steer: {vector, scale}` block go together")


class Rule(_Strict):
    """A deny rule (a finding of `category` when it matches) or an allow rule (masks what it matches)."""

    id: str = Field(min_length=1)
    category: str = "custom"
    patterns: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    stages: list[Stage] = Field(default_factory=lambda: [Stage.INPUT, Stage.OUTPUT])
    action: Action | None = Field(None, description="Overrides the category's action")
    principle: str | None = None

    @model_validator(mode="after")
    def _has_something_to_match(self) -> Rule:
        if not self.patterns and not self.keywords:
            raise ValueError(f"rule {self.id!r} has neither patterns nor keywords")
        for pattern in self.patterns:
            try:
                re.compile(pattern)
            except (re.error, OverflowError, RecursionError) as exc:  # a{9999999999}, deep nesting
                raise ValueError(f"rule {self.id!r}: bad pattern {pattern!r}: {exc}") from exc
        return self


class StreamPolicy(_Strict):
    holdback_tokens: int = Field(24, ge=0, le=4096, description="Most tokens held back unchecked")
    sentence_release: bool = Field(True, description="Release text at sentence ends when sooner")


class Overlay(_Strict):
    categories: dict[str, CategoryPolicy] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    allow: list[Rule] = Field(default_factory=list)
    refusal_mode: RefusalMode | None = None
    fail_mode: FailMode | None = None
    stream: StreamPolicy | None = None
    record_raw_text: bool | None = Field(
        None,
        description="Keep prompts and answers verbatim in the decision records (default: personal data "
        "replaced by placeholders before a record is stored)",
    )
    messages: dict[str, dict[str, str]] = Field(default_factory=dict)
    banned_phrases: list[str] = Field(
        default_factory=list,
        description="Never generated by local models; stopped in outputs of any backend",
    )
    steering_vectors: list[str] = Field(
        default_factory=list, description="Vectors a request may ask for in its railguard block"
    )


class Policy(Overlay):
    version: str = Field(min_length=1)
    default_language: str = "en"
    principles: dict[str, Principle] = Field(default_factory=dict)
    default_principle: str = Field("general", description="Cited when a category names none")
    refusal_mode: RefusalMode | None = "message"
    fail_mode: FailMode | None = "fail_closed"
    stream: StreamPolicy | None = StreamPolicy()
    languages: dict[str, Overlay] = Field(default_factory=dict)
    tenants: dict[str, Overlay] = Field(default_factory=dict)

    @field_validator("messages")
    @classmethod
    def _known_messages(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        unknown = set(value) - {"refusal", "escalation"}
        if unknown:
            raise ValueError(f"unknown message kinds {sorted(unknown)}; use refusal, escalation")
        return value

    @model_validator(mode="after")
    def _principles_exist(self) -> Policy:
        if self.default_principle not in self.principles:
            raise ValueError(f"default_principle {self.default_principle!r} is not a principle")
        overlays = [self, *self.languages.values(), *self.tenants.values()]
        for overlay in overlays:
            named = [c.principle for c in overlay.categories.values()]
            named += [c.grey.principle for c in overlay.categories.values() if c.grey is not None]
            named += [r.principle for r in (*overlay.rules, *overlay.allow)]
            missing = {p for p in named if p is not None and p not in self.principles}
            if missing:
                raise ValueError(f"unknown principles {sorted(missing)}")
        return self

    @model_validator(mode="after")
    def _principles_speak_every_message_language(self) -> Policy:
        """A refusal in German cites its principle in German: a principle written per language must be
        written in every language the policy's messages are (and in the default language)."""
        languages = self.message_languages() | {self.default_language}
        gaps = [
            f"principles.{name}.text.{language}"
            for name, principle in self.principles.items()
            if not isinstance(principle.text, str)
            for language in sorted(languages - set(principle.text))
        ]
        if gaps:
            raise ValueError(
                f"a principle written per language needs a text in the default language and in every "
                f"language the policy's messages are written in ({', '.join(sorted(languages))}): "
                f"add {', '.join(gaps)}"
            )
        return self

    def message_languages(self) -> set[str]:
        """Every language a refusal or escalation message is written in, in the base or an overlay."""
        overlays = [self, *self.languages.values(), *self.tenants.values()]
        languages = {lang for o in overlays for texts in o.messages.values() for lang in texts}
        return languages | {lang for p in self.principles.values() for lang in p.refusal}


def default_policy_path() -> Path:
    return Path(str(files("gateway").joinpath("defaults/policy.yaml")))


def load_policy(path: Path | None = None) -> Policy:
    path = path or default_policy_path()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    # PyYAML raises more than YAMLError on malformed input: ValueError (a date 2001-13-01, `!!float zz`),
    # AttributeError (`!!timestamp junk`), RecursionError (deep nesting). Each is a bad file.
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise PolicyError(f"cannot parse policy {path}: {type(exc).__name__}: {exc}") from exc
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(f"invalid policy {path}:\n{exc}") from exc
    except RecursionError as exc:  # a structure nested too deep to check
        raise PolicyError(f"invalid policy {path}: nested too deeply") from exc
    _warn_untranslated(policy, path)
    return policy


def _warn_untranslated(policy: Policy, path: Path) -> None:
    """A principle written as one string (the older form) is cited untranslated in every language."""
    others = sorted(policy.message_languages() - {policy.default_language})
    single = sorted(name for name, p in policy.principles.items() if isinstance(p.text, str))
    if others and single:
        log.warning(
            "policy %s: principles %s have one text, cited as written in refusals in %s; "
            "write their text per language (text: {en: ..., de: ...})",
            path,
            ", ".join(single),
            ", ".join(others),
        )
