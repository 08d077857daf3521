"""The categories the classifiers score, and how they map to OpenAI's and Llama Guard 3's.

Hazards follow the MLCommons taxonomy as Llama Guard 3 uses it (S1-S14). Three more heads sit beside
them: ``jailbreak`` and ``prompt_injection`` (attacks on the model, not hazards in themselves) and
``pii`` (scored by the pattern detectors in :mod:`classifiers.pii`). ``unsafe`` is the aggregate
"any hazard" head: trained on every harmful example, including those whose category is unknown, so it
is the one to flag a prompt with; the per-hazard heads say which kind of harm it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ATTACKS",
    "CATEGORIES",
    "HAZARDS",
    "HAZARD_NAMES",
    "LEARNED",
    "LLAMA_GUARD_CODES",
    "OPENAI_CATEGORIES",
    "OPENAI_MAPPING",
    "PII",
    "UNSAFE",
    "Hazard",
    "OpenAIRule",
    "to_llama_guard",
    "to_openai",
]


@dataclass(frozen=True, slots=True)
class Hazard:
    name: str
    code: str  # Llama Guard 3 code
    title: str


HAZARDS: tuple[Hazard, ...] = (
    Hazard("violent_crimes", "S1", "Violent crimes"),
    Hazard("non_violent_crimes", "S2", "Non-violent crimes (fraud, scams, cyber crime, drugs)"),
    Hazard("sex_crimes", "S3", "Sex-related crimes"),
    Hazard("child_exploitation", "S4", "Child sexual exploitation"),
    Hazard("defamation", "S5", "Defamation"),
    Hazard("specialized_advice", "S6", "Specialized financial, medical or legal advice"),
    Hazard("privacy", "S7", "Privacy"),
    Hazard("intellectual_property", "S8", "Intellectual property"),
    Hazard("indiscriminate_weapons", "S9", "Indiscriminate weapons (CBRNE)"),
    Hazard("hate", "S10", "Hate and harassment"),
    Hazard("self_harm", "S11", "Suicide and self-harm"),
    Hazard("sexual_content", "S12", "Sexual content"),
    Hazard("elections", "S13", "Elections"),
    Hazard("code_interpreter_abuse", "S14", "Code interpreter abuse"),
)
UNSAFE = "unsafe"
ATTACKS: tuple[str, ...] = ("jailbreak", "prompt_injection")
PII = "pii"
HAZARD_NAMES: tuple[str, ...] = tuple(h.name for h in HAZARDS)
# The order of the model's output heads; ``pii`` has no learned head (patterns score it).
LEARNED: tuple[str, ...] = (UNSAFE, *HAZARD_NAMES, *ATTACKS)
CATEGORIES: tuple[str, ...] = (*LEARNED, PII)
LLAMA_GUARD_CODES: dict[str, str] = {h.name: h.code for h in HAZARDS}

OPENAI_CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


@dataclass(frozen=True, slots=True)
class OpenAIRule:
    """An OpenAI category from ours. Its score is the highest of ``sources`` and, with ``both``, of the
    lower of its two sides' scores (each side the highest of its categories); it flags when one of
    ``sources`` flags, or one category on each side does ("threatening" = hateful *and* violent)."""

    sources: tuple[str, ...] = ()
    both: tuple[tuple[str, ...], tuple[str, ...]] | None = None


_ILLICIT = ("non_violent_crimes", "sex_crimes", "intellectual_property", "code_interpreter_abuse")
_HARASSING = ("hate", "defamation")
_VIOLENT = ("violent_crimes",)

# Each subcategory implies its parent, as in OpenAI's definitions ("illicit/violent": illicit content
# that also refers to violence or to procuring a weapon). Making weapons of mass destruction is
# procuring a weapon: illicit and illicit/violent, but not violence (which depicts or threatens harm).
OPENAI_MAPPING: dict[str, OpenAIRule] = {
    "harassment": OpenAIRule(_HARASSING),
    "harassment/threatening": OpenAIRule(both=(_HARASSING, _VIOLENT)),
    "hate": OpenAIRule(("hate",)),
    "hate/threatening": OpenAIRule(both=(("hate",), _VIOLENT)),
    "illicit": OpenAIRule((*_ILLICIT, "indiscriminate_weapons")),
    "illicit/violent": OpenAIRule(("indiscriminate_weapons",), both=(_ILLICIT, _VIOLENT)),
    "self-harm": OpenAIRule(("self_harm",)),
    "self-harm/intent": OpenAIRule(("self_harm",)),
    "self-harm/instructions": OpenAIRule(("self_harm",)),
    "sexual": OpenAIRule(("sexual_content", "sex_crimes", "child_exploitation")),
    "sexual/minors": OpenAIRule(("child_exploitation",)),
    "violence": OpenAIRule(_VIOLENT),
    "violence/graphic": OpenAIRule(_VIOLENT),
}
# What `unsafe` alone flags: the broad categories, never a subcategory without its parent.
_GENERAL: tuple[str, ...] = tuple(name for name in OPENAI_CATEGORIES if "/" not in name)


def _flag(scores: Mapping[str, float], thresholds: Mapping[str, float], name: str) -> bool:
    return scores.get(name, 0.0) >= thresholds.get(name, 0.5)


def _apply(
    rule: OpenAIRule, scores: Mapping[str, float], thresholds: Mapping[str, float]
) -> tuple[float, bool]:
    score = max((float(scores.get(s, 0.0)) for s in rule.sources), default=0.0)
    flagged = any(_flag(scores, thresholds, s) for s in rule.sources)
    if rule.both is not None:
        sides = [max(float(scores.get(s, 0.0)) for s in side) for side in rule.both]
        score = max(score, min(sides))
        flagged = flagged or all(any(_flag(scores, thresholds, s) for s in side) for side in rule.both)
    return score, flagged


def to_openai(
    scores: Mapping[str, float], thresholds: Mapping[str, float] | None = None
) -> tuple[dict[str, bool], dict[str, float]]:
    """Our scores -> OpenAI's ``(categories, category_scores)``, keys exactly OpenAI's 13.

    Without ``thresholds`` every category flags at 0.5. When ``unsafe`` flags but no mapped category
    does, the broad category (no subcategory) with the highest score is flagged too, so that
    ``flagged == any(categories)`` holds for a client that computes it that way; ties go to the first
    in OpenAI's order.
    """
    th = thresholds or {}
    categories: dict[str, bool] = {}
    category_scores: dict[str, float] = {}
    for name in OPENAI_CATEGORIES:
        category_scores[name], categories[name] = _apply(OPENAI_MAPPING[name], scores, th)
    if _flag(scores, th, UNSAFE) and not any(categories.values()):
        top = max(_GENERAL, key=lambda n: category_scores[n])
        categories[top] = True
    return categories, category_scores


def to_llama_guard(scores: Mapping[str, float], thresholds: Mapping[str, float] | None = None) -> list[str]:
    """The Llama Guard 3 codes (``"S1"``..``"S14"``) whose hazard is flagged, in code order."""
    th = thresholds or {}
    return [h.code for h in HAZARDS if _flag(scores, th, h.name)]
