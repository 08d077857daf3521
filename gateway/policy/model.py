"""The policy file's schema (YAML), validated strictly: a typo in a policy must fail at load, not in traffic.

A policy has a base, and overlays per language and per tenant (tenant wins over language, which wins over
the base). Overlays may change category actions and thresholds, add rules and allow-rules, and change the
refusal mode and messages.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.guards.base import Action, Stage

RefusalMode = Literal["message", "error"]
FailMode = Literal["fail_open", "fail_closed"]


class PolicyError(ValueError):
    """A policy file that cannot be loaded; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Principle(_Strict):
    """A written principle that refusals cite; `refusal` maps a language code to the message."""

    text: str = Field(min_length=1)
    refusal: dict[str, str] = Field(default_factory=dict)


class CategoryPolicy(_Strict):
    action: Action = Action.REFUSE
    threshold: float | None = Field(
        None, ge=0, le=1, description="Default: the classifier's calibrated threshold (rules score 1.0)"
    )
    principle: str | None = None


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
            except re.error as exc:
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
    messages: dict[str, dict[str, str]] = Field(default_factory=dict)


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
            named += [r.principle for r in (*overlay.rules, *overlay.allow)]
            missing = {p for p in named if p is not None and p not in self.principles}
            if missing:
                raise ValueError(f"unknown principles {sorted(missing)}")
        return self


def default_policy_path() -> Path:
    return Path(str(files("gateway").joinpath("defaults/policy.yaml")))


def load_policy(path: Path | None = None) -> Policy:
    path = path or default_policy_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy {path}: {exc}") from exc
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(f"invalid policy {path}:\n{exc}") from exc
