"""Instruction-following examples with several verifiable constraints at once, from our own texts.

`trainer.instructions` teaches one constraint per example. Real requests (and IFEval's) stack them: a
layout ("three paragraphs, the second starting with 'Moreover'") plus a rewrite of the whole text (all
lowercase, no commas) plus a measure (at least 12 sentences, the letter 'e' at least 40 times) plus an
addition (a P.S., placeholders in square brackets, an exact closing phrase). Here an answer is built in
that order, layout -> additions -> rewrite -> measures -> wrapping, and every measure is taken on the
final text, so each example satisfies all of its checks by construction (the tests run them through
lm-eval's own checkers). Only the kinds of constraint are IFEval's; no prompt of it is read or imitated.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trainer.instructions import Example, Topic

__all__ = ["LAYOUTS", "generate_combined"]

Check = tuple[str, dict[str, Any]]

_OPENERS = ("Moreover", "Also", "However", "Finally", "Overall", "Today", "Interestingly", "Still")
_ENDINGS = (
    "Is there anything else I can help with?",
    "Let me know if you have additional questions.",
    "Hope this helps!",
    "That is the whole story.",
    "Any other questions?",
)
_PLACEHOLDERS = ("[name]", "[date]", "[city]", "[address]", "[phone number]", "[school]", "[company]")


@dataclass
class _Draft:
    topic: Topic
    task: str
    asks: list[str] = field(default_factory=list)
    answer: str = ""
    sep: str = "\n\n"  # what joins an addition to the answer without changing its paragraph count
    checks: list[Check] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def _body(t: Topic, rng: random.Random, low: int = 3) -> str:
    return " ".join(t.sentences[: rng.randint(low, len(t.sentences))])


# Layouts: the shape of the answer. Each sets `answer`; a layout with a paragraph count sets `sep`.


def _plain(d: _Draft, rng: random.Random) -> None:
    d.answer = _body(d.topic, rng)


def _bullets(d: _Draft, rng: random.Random) -> None:
    n = rng.randint(2, min(5, len(d.topic.sentences)))
    d.asks.append(
        rng.choice(
            [
                f"Your answer must contain exactly {n} bullet points in markdown format, like:\n* point one",
                f"Use exactly {n} markdown bullet points (* ...).",
                f"Answer with {n} bullet points, no more and no fewer.",
            ]
        )
    )
    d.answer = "\n".join(f"* {s}" for s in d.topic.sentences[:n])
    d.sep = "\n"
    d.checks.append(("detectable_format:number_bullet_lists", {"num_bullets": n}))


def _paragraphs(d: _Draft, rng: random.Random) -> None:
    n = rng.choice([2, 3])
    s, p2 = list(d.topic.sentences), list(d.topic.paragraph2)
    parts = [" ".join(s[:3]), " ".join(p2)] if n == 2 else [" ".join(s[:3]), " ".join(s[3:]), " ".join(p2)]
    d.asks.append(
        rng.choice(
            [
                f"There should be {n} paragraphs, separated from each other by the markdown divider ***.",
                f"Write {n} paragraphs and put *** on its own line between them.",
            ]
        )
    )
    d.answer = "\n***\n".join(parts)
    d.checks.append(("length_constraints:number_paragraphs", {"num_paragraphs": n}))


def _nth_paragraph(d: _Draft, rng: random.Random) -> None:
    n = rng.choice([2, 3])
    nth = rng.randint(2, n)
    word = rng.choice(_OPENERS)
    s, p2 = list(d.topic.sentences), list(d.topic.paragraph2)
    parts = [" ".join(s[:3]), " ".join(p2)] if n == 2 else [" ".join(s[:3]), " ".join(s[3:]), " ".join(p2)]
    first = parts[nth - 1]
    parts[nth - 1] = f"{word}, {first[0].lower()}{first[1:]}"
    d.asks.append(
        f"Write exactly {n} paragraphs separated by a blank line (two new lines). "
        f"Paragraph {nth} must start with the word {word}."
    )
    d.answer = "\n\n".join(parts)
    d.sep = "\n"
    d.checks.append(
        (
            "length_constraints:nth_paragraph_first_word",
            {"num_paragraphs": n, "nth_paragraph": nth, "first_word": word.lower()},
        )
    )


def _sections(d: _Draft, rng: random.Random) -> None:
    marker = rng.choice(["SECTION", "Section", "PART", "Part"])
    d.asks.append(f"Your response must have 2 sections. Mark the beginning of each section with {marker} X.")
    d.answer = (
        f"{marker} 1\n" + " ".join(d.topic.sentences[:3]) + f"\n\n{marker} 2\n" + " ".join(d.topic.paragraph2)
    )
    d.checks.append(("detectable_format:multiple_sections", {"section_spliter": marker, "num_sections": 2}))
    d.names.append("sections:" + marker)  # a rewrite of case would break the marker


def _title(d: _Draft, rng: random.Random) -> None:
    d.asks.append(
        rng.choice(
            [
                "Give your answer a title wrapped in double angular brackets, such as <<title>>.",
                "Include a title in double angular brackets, i.e. <<my title>>.",
            ]
        )
    )
    d.answer = f"<<{d.topic.title}>>\n\n" + _body(d.topic, rng)
    d.checks.append(("detectable_format:title", {}))


def _highlights(d: _Draft, rng: random.Random) -> None:
    n = rng.choice([2, 3])
    d.asks.append(f"Highlight at least {n} sections of your answer with markdown, i.e. *a section*.")
    d.answer = " ".join(f"*{s}*" if i < n else s for i, s in enumerate(d.topic.sentences[:5]))
    d.checks.append(("detectable_format:number_highlighted_sections", {"num_highlights": n}))


def _two_responses(d: _Draft, rng: random.Random) -> None:
    d.asks.append(
        "Give two different responses, separated by six asterisks: ****** (and only the responses are)."
    )
    d.answer = " ".join(d.topic.sentences[:3]) + "\n******\n" + " ".join(d.topic.paragraph2)
    d.checks.append(("combination:two_responses", {}))


def _yes_no(d: _Draft, rng: random.Random) -> None:
    claim = d.topic.sentences[0].rstrip(".")
    d.task = f"Is it true that {claim[0].lower()}{claim[1:]}?"
    d.asks.append("Answer with one of: 'My answer is yes.', 'My answer is no.', 'My answer is maybe.'")
    d.answer = "My answer is yes. " + " ".join(d.topic.sentences[1:3])
    d.checks.append(("detectable_format:constrained_response", {}))


def _json(d: _Draft, rng: random.Random) -> None:
    d.asks.append(rng.choice(["Wrap your entire output in JSON format.", "Answer with valid JSON only."]))
    d.answer = json.dumps({"title": d.topic.title, "points": list(d.topic.sentences[:3])}, indent=2)
    d.names.append("json")


LAYOUTS: dict[str, Callable[[_Draft, random.Random], None]] = {
    "plain": _plain,
    "bullets": _bullets,
    "paragraphs": _paragraphs,
    "nth_paragraph": _nth_paragraph,
    "sections": _sections,
    "title": _title,
    "highlights": _highlights,
    "two_responses": _two_responses,
    "yes_no": _yes_no,
    "json": _json,
}


# Additions: text appended to the answer (before any rewrite, so a rewrite covers them too).


def _postscript(d: _Draft, rng: random.Random) -> None:
    marker = rng.choice(["P.S.", "P.P.S"])
    d.asks.append(f"At the end of your response, add a postscript starting with {marker}")
    d.answer += d.sep + f"{marker} " + rng.choice(["Thanks for asking.", "Ask me anything else you like."])
    d.checks.append(("detectable_content:postscript", {"postscript_marker": marker}))


def _placeholders(d: _Draft, rng: random.Random) -> None:
    n = rng.choice([1, 2, 3])
    chosen = rng.sample(_PLACEHOLDERS, n)
    d.asks.append(f"Include at least {n} placeholders in square brackets, such as [name].")
    line = rng.choice(["Written by {}.", "Contact: {}.", "Sent from {}."])
    d.answer += d.sep + line.format(" and ".join(chosen))
    d.checks.append(("detectable_content:number_placeholders", {"num_placeholders": n}))


# Rewrites of the whole text (one at most).


def _lowercase(d: _Draft, rng: random.Random) -> None:
    d.asks.append("Your entire response must be in lowercase letters; no capital letters at all.")
    d.answer = d.answer.lower()
    d.checks.append(("change_case:english_lowercase", {}))


def _no_commas(d: _Draft, rng: random.Random) -> None:
    d.asks.append(rng.choice(["Do not use any commas.", "Avoid commas in the whole response."]))
    d.answer = d.answer.replace(",", "")
    d.checks.append(("punctuation:no_comma", {}))


def _capital_words(d: _Draft, rng: random.Random) -> None:
    words = [w for w in dict.fromkeys(re.findall(r"\b[a-z]{5,}\b", d.answer))]
    n = min(len(words), rng.choice([2, 3, 4]))
    if n == 0:
        return
    for w in words[:n]:
        d.answer = re.sub(rf"\b{w}\b", w.upper(), d.answer, count=1)
    d.asks.append(f"Use words in all capital letters at least {n} times to stress the key points.")
    kwargs = {"capital_frequency": n, "capital_relation": "at least"}
    d.checks.append(("change_case:capital_word_frequency", kwargs))


# Measures, taken on the text as it now stands.


def _words(d: _Draft, rng: random.Random) -> None:
    count = len(re.findall(r"\w+", d.answer))
    if rng.random() < 0.5:
        limit = count + rng.randint(5, 30)
        d.asks.append(f"Answer in fewer than {limit} words.")
        d.checks.append(("length_constraints:number_words", {"relation": "less than", "num_words": limit}))
    else:
        limit = max(10, (count - rng.randint(2, 15)) // 5 * 5)
        d.asks.append(f"Your response should contain at least {limit} words.")
        d.checks.append(("length_constraints:number_words", {"relation": "at least", "num_words": limit}))


def _sentences(d: _Draft, rng: random.Random) -> None:
    count = len(re.findall(r"[.!?][\"')*\],]*(?:\s|$)", d.answer))
    if rng.random() < 0.5 or count < 5:
        limit = count + rng.randint(3, 6)
        d.asks.append(f"Answer with less than {limit} sentences.")
        kwargs = {"relation": "less than", "num_sentences": limit}
    else:
        limit = count - 3  # a margin for abbreviations ("Mr.") that a sentence splitter reads otherwise
        d.asks.append(f"Your response should contain at least {limit} sentences.")
        kwargs = {"relation": "at least", "num_sentences": limit}
    d.checks.append(("length_constraints:number_sentences", kwargs))


def _letter(d: _Draft, rng: random.Random) -> None:
    letter = rng.choice("aeinorst")
    have = d.answer.lower().count(letter)
    n = max(1, have // 2 // 5 * 5)
    d.asks.append(f"In your response, the letter {letter} should appear at least {n} times.")
    kwargs = {"letter": letter, "let_frequency": n, "let_relation": "at least"}
    d.checks.append(("keywords:letter_frequency", kwargs))


def _keyword(d: _Draft, rng: random.Random) -> None:
    present = [k for k in d.topic.keywords if re.search(re.escape(k), d.answer, flags=re.IGNORECASE)]
    if not present:
        return
    word = rng.choice(present)
    n = len(re.findall(re.escape(word), d.answer, flags=re.IGNORECASE))
    if n >= 2 and rng.random() < 0.5:
        d.asks.append(f"Use the word {word} at least {n} times.")
        d.checks.append(("keywords:frequency", {"keyword": word, "frequency": n, "relation": "at least"}))
    else:
        d.asks.append(f"Include the keyword {word} in your response.")
        d.checks.append(("keywords:existence", {"keywords": [word]}))


def _forbidden(d: _Draft, rng: random.Random) -> None:
    text = d.answer.lower()
    pool = [w.strip(".,;:!?").lower() for s in d.topic.paragraph2 + d.topic.sentences for w in s.split()]
    absent = [w for w in dict.fromkeys(pool) if len(w) > 4 and w.isalpha() and w not in text]
    if not absent:
        return
    words = rng.sample(absent, min(2, len(absent)))
    d.asks.append("Do not include the words " + " or ".join(words) + " in the response.")
    d.checks.append(("keywords:forbidden_words", {"forbidden_words": words}))


# Endings and wrapping, last.


def _end_phrase(d: _Draft, rng: random.Random) -> None:
    phrase = rng.choice(_ENDINGS)
    if "json" in d.names:
        return
    if any(c[0] == "change_case:english_lowercase" for c in d.checks):
        phrase = phrase.lower()
    d.asks.append(f'Finish your response with this exact phrase: "{phrase}". Nothing may follow it.')
    d.answer += d.sep + phrase
    d.checks.append(("startend:end_checker", {"end_phrase": phrase}))


def _quotation(d: _Draft, rng: random.Random) -> None:
    d.asks.append("Wrap your entire response in double quotation marks.")
    d.answer = f'"{d.answer}"'
    d.checks.append(("startend:quotation", {}))


ADDITIONS = (_postscript, _placeholders)
REWRITES = (_lowercase, _no_commas, _capital_words)
MEASURES = (_words, _sentences, _letter, _keyword, _forbidden)


def _one(t: Topic, rng: random.Random, layout: str) -> Example | None:
    d = _Draft(t, t.ask)
    LAYOUTS[layout](d, rng)
    json_only = "json" in d.names
    steps: list[Callable[[_Draft, random.Random], None]] = []
    if not json_only and rng.random() < 0.35:
        steps.append(rng.choice(ADDITIONS))
    cased = any(n.startswith("sections:") for n in d.names) or layout == "yes_no"
    rewrites = [r for r in REWRITES if not (cased and r in (_lowercase, _capital_words))]
    if not json_only and rng.random() < 0.5:
        steps.append(rng.choice(rewrites))
    if not json_only and rng.random() < 0.3:
        steps.append(_end_phrase)
    steps.append(rng.choice(MEASURES))  # measured on the text as it will be sent
    for step in steps:
        step(d, rng)
    if layout not in ("json", "bullets") and rng.random() < 0.1:
        _quotation(d, rng)
    if json_only:  # JSON is the last word: no text may follow it
        d.checks.append(("detectable_format:json_format", {}))
    if len(d.checks) < 2:
        return None
    rng.shuffle(d.asks)
    prompt = d.task + " " + " ".join(d.asks) if rng.random() < 0.8 else " ".join(d.asks) + " " + d.task
    return Example(prompt, d.answer, tuple(d.checks), "combined:" + layout)


def generate_combined(topics: list[Topic], count: int, seed: int) -> list[Example]:
    """`count` examples with 2-4 checks each, layouts taken in turn, the same list for the same seed."""
    if not topics:
        raise ValueError("no topics to build instruction-following examples from")
    rng = random.Random(seed)
    names = list(LAYOUTS)
    out: list[Example] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < count and attempts < count * 20:
        attempts += 1
        example = _one(rng.choice(topics), rng, names[attempts % len(names)])
        if example is None or example.prompt in seen:
            continue
        seen.add(example.prompt)
        out.append(example)
    return out
