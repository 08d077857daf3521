"""Instruction-following examples with verifiable constraints, generated from our own source texts.

Each topic of `trainer/data/instructions/topics.jsonl` (written in this repository) holds a request, a
title, ordered sentences, a second paragraph and keywords. A constraint picks what the answer says and
how it is laid out (word and sentence counts, casing, a title in `<<...>>`, JSON only, an exact final
phrase, bullet counts, forbidden words, ...); the answer is built so that it satisfies the constraint,
and each example carries the IFEval-style checks it satisfies (`checks`), which the tests run through
lm-eval's own checkers. No prompt of IFEval is read or imitated here: only the kinds of constraint.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Example", "Topic", "generate", "read_topics"]

_ENDINGS = (
    "Is there anything else I can help with?",
    "Let me know if you have additional questions.",
    "That is all for now.",
    "I hope this gives you a clear picture.",
    "Thanks for reading.",
)
_POSTSCRIPTS = (
    "there is always more to learn about this.",
    "a short walk is a good time to think it over.",
    "feel free to ask me for more detail.",
)


@dataclass(frozen=True)
class Topic:
    topic: str
    ask: str
    title: str
    sentences: tuple[str, ...]
    paragraph2: tuple[str, ...]
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str
    checks: tuple[tuple[str, dict[str, Any]], ...]  # (IFEval instruction id, its kwargs) that hold
    constraint: str

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.prompt}, {"role": "assistant", "content": self.answer}]


def read_topics(path: Path) -> list[Topic]:
    """The topics file; a malformed line is a ValueError naming it."""
    topics = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            topic = Topic(
                topic=str(raw["topic"]),
                ask=str(raw["ask"]),
                title=str(raw["title"]),
                sentences=tuple(str(s) for s in raw["sentences"]),
                paragraph2=tuple(str(s) for s in raw["paragraph2"]),
                keywords=tuple(str(k) for k in raw["keywords"]),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a topic ({exc})") from None
        if len(topic.sentences) < 4 or len(topic.paragraph2) < 2:
            raise ValueError(f"{path}:{number}: a topic needs 4+ sentences and a 2+ sentence paragraph2")
        topics.append(topic)
    return topics


def _words(text: str) -> int:
    return len(text.split())


Constraint = Callable[[Topic, random.Random], Example | None]


def _lowercase(t: Topic, rng: random.Random) -> Example:
    ask = rng.choice(
        [
            "Your entire response should be in English and in all lowercase letters. "
            "No capital letters are allowed.",
            "Write everything in lowercase letters only.",
            "Use only lowercase letters in your whole answer.",
        ]
    )
    answer = " ".join(t.sentences[:4]).lower()
    return Example(f"{t.ask} {ask}", answer, (("change_case:english_lowercase", {}),), "lowercase")


def _uppercase(t: Topic, rng: random.Random) -> Example:
    ask = rng.choice(
        [
            "Your entire response should be in English and in capital letters only.",
            "Write the whole answer in uppercase letters.",
            "Answer in all capital letters, please.",
        ]
    )
    answer = " ".join(t.sentences[:3]).upper()
    return Example(f"{t.ask} {ask}", answer, (("change_case:english_capital", {}),), "uppercase")


def _title(t: Topic, rng: random.Random) -> Example:
    ask = rng.choice(
        [
            "Include a title wrapped in double angular brackets, such as <<my title>>.",
            "Give your answer a title in double angular brackets, like <<title>>.",
            "Start with a title inside double angular brackets, i.e. <<title>>.",
        ]
    )
    answer = f"<<{t.title}>>\n\n" + " ".join(t.sentences[:4])
    return Example(f"{t.ask} {ask}", answer, (("detectable_format:title", {}),), "title")


def _end_phrase(t: Topic, rng: random.Random) -> Example:
    phrase = rng.choice(_ENDINGS)
    ask = rng.choice(
        [
            f'Finish your response with this exact phrase: "{phrase}". No other words should follow it.',
            f'End your answer with the exact phrase "{phrase}"',
            f"Please end with the phrase {phrase} and nothing after it.",
        ]
    )
    answer = " ".join(t.sentences[:4]) + "\n\n" + phrase
    return Example(
        f"{t.ask} {ask}", answer, (("startend:end_checker", {"end_phrase": phrase}),), "end_phrase"
    )


def _bullets(t: Topic, rng: random.Random) -> Example:
    n = rng.choice([2, 3, 4, 5])
    ask = rng.choice(
        [
            f"Your answer must contain exactly {n} bullet points. "
            "Use markdown bullet points such as:\n* This is a point.",
            f"Answer with exactly {n} bullet points in markdown (lines starting with *).",
            f"Give me {n} bullet points, no more and no less, using * for each.",
        ]
    )
    answer = "\n".join(f"* {s}" for s in t.sentences[:n])
    return Example(
        f"{t.ask} {ask}", answer, (("detectable_format:number_bullet_lists", {"num_bullets": n}),), "bullets"
    )


def _json(t: Topic, rng: random.Random) -> Example:
    ask = rng.choice(
        [
            "Wrap your entire output in JSON format.",
            "Your entire output should be valid JSON.",
            "Answer in JSON only, with no text outside the JSON.",
        ]
    )
    body = {"title": t.title, "points": list(t.sentences[:3])}
    answer = json.dumps(body, ensure_ascii=False, indent=2)
    return Example(f"{t.ask} {ask}", answer, (("detectable_format:json_format", {}),), "json")


def _forbidden(t: Topic, rng: random.Random) -> Example | None:
    kept = list(t.sentences[:4])
    text = " ".join(kept).lower()
    candidates = [
        w.strip(".,;:!?").lower()
        for s in (*t.sentences[4:], *t.paragraph2)
        for w in s.split()
        if len(w.strip(".,;:!?")) > 4
    ]
    banned = [w for w in dict.fromkeys(candidates) if w.isalpha() and w not in text]
    if len(banned) < 2:
        return None
    words = rng.sample(banned, 2)
    ask = rng.choice(
        [
            f"Do not include the words {words[0]} or {words[1]} in your response.",
            f"Avoid the words '{words[0]}' and '{words[1]}'.",
        ]
    )
    return Example(
        f"{t.ask} {ask}",
        " ".join(kept),
        (("keywords:forbidden_words", {"forbidden_words": words}),),
        "forbidden",
    )


def _fewer_words(t: Topic, rng: random.Random) -> Example:
    kept: list[str] = []
    for sentence in t.sentences:
        if _words(" ".join([*kept, sentence])) > 45:
            break
        kept.append(sentence)
    answer = " ".join(kept or t.sentences[:1])
    limit = max(_words(answer) + rng.randint(3, 15), 20)
    ask = rng.choice(
        [
            f"Answer in fewer than {limit} words.",
            f"Keep it under {limit} words.",
            f"Use less than {limit} words.",
        ]
    )
    return Example(
        f"{t.ask} {ask}",
        answer,
        (("length_constraints:number_words", {"relation": "less than", "num_words": limit}),),
        "fewer_words",
    )


def _at_least_words(t: Topic, rng: random.Random) -> Example:
    answer = " ".join(t.sentences) + "\n\n" + " ".join(t.paragraph2)
    limit = max(10, (_words(answer) - rng.randint(5, 20)) // 10 * 10)
    ask = rng.choice(
        [f"Write at least {limit} words.", f"Your answer should be at least {limit} words long."]
    )
    return Example(
        f"{t.ask} {ask}",
        answer,
        (("length_constraints:number_words", {"relation": "at least", "num_words": limit}),),
        "at_least_words",
    )


def _paragraphs(t: Topic, rng: random.Random) -> Example:
    ask = rng.choice(
        [
            "There should be 2 paragraphs. Paragraphs are separated with the markdown divider: ***",
            "Write exactly two paragraphs and put *** between them.",
        ]
    )
    answer = " ".join(t.sentences[:4]) + "\n***\n" + " ".join(t.paragraph2)
    return Example(
        f"{t.ask} {ask}",
        answer,
        (("length_constraints:number_paragraphs", {"num_paragraphs": 2}),),
        "paragraphs",
    )


def _keywords(t: Topic, rng: random.Random) -> Example:
    words = list(t.keywords[:2])
    ask = rng.choice(
        [
            f"Include the keywords {words[0]} and {words[1]} in the response.",
            f"Make sure to use the words '{words[0]}' and '{words[1]}'.",
        ]
    )
    answer = " ".join(t.sentences)
    return Example(f"{t.ask} {ask}", answer, (("keywords:existence", {"keywords": words}),), "keywords")


def _no_commas(t: Topic, rng: random.Random) -> Example | None:
    kept = [s for s in t.sentences if "," not in s][:4]
    if len(kept) < 2:
        return None
    ask = rng.choice(
        [
            "Do not use any commas in your response.",
            "Please avoid commas entirely.",
            "No commas at all, please.",
        ]
    )
    return Example(f"{t.ask} {ask}", " ".join(kept), (("punctuation:no_comma", {}),), "no_commas")


def _postscript(t: Topic, rng: random.Random) -> Example:
    ask = rng.choice(
        [
            "At the end of your response, please explicitly add a postscript starting with P.S.",
            "Add a postscript at the end that starts with P.S.",
        ]
    )
    answer = " ".join(t.sentences[:4]) + "\n\nP.S. " + rng.choice(_POSTSCRIPTS).capitalize()
    return Example(
        f"{t.ask} {ask}",
        answer,
        (("detectable_content:postscript", {"postscript_marker": "P.S."}),),
        "postscript",
    )


def _highlights(t: Topic, rng: random.Random) -> Example:
    n = rng.choice([2, 3])
    ask = rng.choice(
        [
            f"Highlight at least {n} sections in your answer with markdown, i.e. *highlighted section*.",
            f"Use markdown to highlight at least {n} parts of the answer, like *this*.",
        ]
    )
    parts = [f"*{s}*" if i < n else s for i, s in enumerate(t.sentences[:5])]
    return Example(
        f"{t.ask} {ask}",
        " ".join(parts),
        (("detectable_format:number_highlighted_sections", {"num_highlights": n}),),
        "highlights",
    )


def _quotation(t: Topic, rng: random.Random) -> Example:
    ask = rng.choice(
        [
            "Wrap your entire response with double quotation marks.",
            "Put the whole answer inside double quotes.",
        ]
    )
    return Example(
        f"{t.ask} {ask}", '"' + " ".join(t.sentences[:3]) + '"', (("startend:quotation", {}),), "quotation"
    )


def _sections(t: Topic, rng: random.Random) -> Example:
    marker = rng.choice(["SECTION", "Section", "PART"])
    ask = f"Your response must have 2 sections. Mark the beginning of each section with {marker} X."
    answer = f"{marker} 1\n" + " ".join(t.sentences[:3]) + f"\n\n{marker} 2\n" + " ".join(t.paragraph2)
    return Example(
        f"{t.ask} {ask}",
        answer,
        (("detectable_format:multiple_sections", {"section_spliter": marker, "num_sections": 2}),),
        "sections",
    )


def _two_responses(t: Topic, rng: random.Random) -> Example:
    ask = (
        "Give two different responses. "
        "Responses and only responses should be separated by 6 asterisk symbols: ******."
    )
    answer = " ".join(t.sentences[:3]) + "\n******\n" + " ".join(t.paragraph2)
    return Example(f"{t.ask} {ask}", answer, (("combination:two_responses", {}),), "two_responses")


def _repeat(t: Topic, rng: random.Random) -> Example:
    request = t.ask
    ask = (
        "First repeat the request word for word without change, then give your answer "
        "(do not say anything before repeating the request; the request you need to repeat does not "
        "include this sentence)"
    )
    answer = request + "\n\n" + " ".join(t.sentences[:4])
    return Example(
        f"{request} {ask}",
        answer,
        (("combination:repeat_prompt", {"prompt_to_repeat": request}),),
        "repeat",
    )


CONSTRAINTS: dict[str, Constraint] = {
    "lowercase": _lowercase,
    "uppercase": _uppercase,
    "title": _title,
    "end_phrase": _end_phrase,
    "bullets": _bullets,
    "json": _json,
    "forbidden": _forbidden,
    "fewer_words": _fewer_words,
    "at_least_words": _at_least_words,
    "paragraphs": _paragraphs,
    "keywords": _keywords,
    "no_commas": _no_commas,
    "postscript": _postscript,
    "highlights": _highlights,
    "quotation": _quotation,
    "sections": _sections,
    "two_responses": _two_responses,
    "repeat": _repeat,
}


def generate(topics: list[Topic], count: int, seed: int) -> list[Example]:
    """`count` examples, constraints taken in turn, topics drawn by `seed` (the same list every time)."""
    if not topics:
        raise ValueError("no topics to build instruction-following examples from")
    rng = random.Random(seed)
    names = list(CONSTRAINTS)
    examples: list[Example] = []
    seen: set[str] = set()
    attempts = 0
    while len(examples) < count and attempts < count * 20:
        attempts += 1
        name = names[attempts % len(names)]
        example = CONSTRAINTS[name](rng.choice(topics), rng)
        if example is None or example.prompt in seen:
            continue
        seen.add(example.prompt)
        examples.append(example)
    return examples
