"""`railguard data build`: reviewed flagged traffic becomes safety SFT and DPO data, versioned for audit.

Input: the review queue's decided items (`railguard review export`, JSONL). Each item's final label says
what the policy should have done and may carry the ideal answer a reviewer wrote:

* **over-refused** (the guard refused or escalated, the reviewers say allow) with an ideal answer: an SFT
  conversation (prompt -> ideal answer) and a DPO pair (chosen: the ideal answer; rejected: the refusal the
  user got). These are what make the model refuse less where it should not.
* **harmful** (the reviewers say refuse): an SFT conversation (prompt -> the reviewer's refusal, or the
  gateway's own refusal in the user's language, or a principled refusal per language). The model's own harmful
  answer is never stored by the gateway; an AI label (`trainer.label`) regenerates it, and then the item also
  gives a DPO pair (chosen: the refusal; rejected: that answer).

Whatever the action, a final label that ranks two or more of the item's candidate answers (the model's
regenerations, `gateway.review.candidates`) gives one more DPO pair: chosen, the best-ranked; rejected, the
worst-ranked.

Items only an AI has labelled (`railguard review export --with-ai`) carry their provenance (teacher model,
prompt version, policy version, principle) into the manifest beside the human ones.

Everything is de-identified again (the PII redactor) and decontaminated: an item whose prompt matches a
prompt of an evaluation-only set or of an evaluation suite (normalised, by sha256) is left out and
counted. Our own demonstrations are mixed in against forgetting (``--general``). A dataset version is
the sha256 over its files; its manifest records the items' request ids, label provenance and reviewer
agreement, the model/adapter and policy versions they came from, languages and counts per category.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.datasets import Conversation, DataError, demo_conversations

# A principled refusal with a safe alternative, per language, for harmful items that no reviewer wrote
# a refusal for and that the gateway did not refuse itself (its refusal, in the user's language, is used
# when it did).
REFUSALS = {
    "en": "I can't help with that: it could cause serious harm. "
    "If it helps, I can explain the safety side of the topic instead.",
    "de": "Dabei kann ich nicht helfen, denn es könnte ernsthaft schaden. "
    "Gern erkläre ich stattdessen, worauf es bei der Sicherheit ankommt.",
    "fr": "Je ne peux pas aider avec cela, car cela pourrait causer un tort grave. "
    "Je peux plutôt expliquer les aspects de sécurité du sujet.",
    "es": "No puedo ayudar con eso, porque podría causar un daño grave. "
    "Si te sirve, puedo explicarte en cambio los aspectos de seguridad.",
    "it": "Non posso aiutarti con questo, perché potrebbe causare danni gravi. "
    "Posso invece spiegarti gli aspetti di sicurezza dell'argomento.",
    "pt": "Não posso ajudar com isso, porque pode causar danos graves. "
    "Se ajudar, posso explicar os aspetos de segurança do tema.",
    "zh": "这个我不能帮忙，因为它可能造成严重伤害。如果有帮助，我可以改为介绍这个话题的安全知识。",
    "ar": "لا أستطيع المساعدة في ذلك لأنه قد يسبب ضررًا جسيمًا. "
    "يمكنني بدلاً من ذلك شرح جوانب السلامة في هذا الموضوع.",
}


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.casefold()).strip()


def digest(text: str) -> str:
    return hashlib.sha256(normalise(text).encode()).hexdigest()


def evaluation_prompts(data_dir: Path | None) -> set[str]:
    """sha256 of every prompt of the evaluation-only sets and of the evaluation suites."""
    from classifiers.evaluation.evalsets import EVAL_SETS
    from evaluation.suites import SUITES

    found: set[str] = set()
    if data_dir is not None and data_dir.is_dir():
        for evalset in EVAL_SETS:
            try:
                found |= {digest(item.text) for item in evalset.read(data_dir)}
            except FileNotFoundError:
                continue
        ifeval = data_dir / "ifeval" / "input_data.jsonl"
        if ifeval.is_file():
            found |= {digest(json.loads(line)["prompt"]) for line in ifeval.read_text().splitlines() if line}
    for suite in SUITES.values():
        if not suite.needs_data or data_dir is not None:
            try:
                found |= {digest(m["content"]) for item in suite.load(data_dir) for m in item.messages}
            except (FileNotFoundError, ValueError):
                continue
    return found


@dataclass(frozen=True)
class Built:
    version: str
    directory: Path
    manifest: dict[str, Any]


def _last_user(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


def _against_forgetting(demos: list[Conversation], count: int) -> list[Conversation]:
    """``count`` of our demonstrations: first every helpful answer to a prompt that sounds unsafe (the
    counterweight to the refusals this data teaches: without them a safety update raises over-refusal),
    then the other kinds in a stable order spread over kinds and languages."""
    contrast = [c for c in demos if c.kind == "sounds_unsafe"]
    rest = sorted((c for c in demos if c.kind != "sounds_unsafe"), key=lambda c: c.digest)
    return (contrast + rest)[:count]


def _pair(prompt: list[dict[str, Any]], chosen: str, rejected: str) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def _ranked(candidates: list[Any], ranking: list[Any]) -> tuple[str, str] | None:
    """The best- and worst-ranked candidate answers' texts, when a ranking orders two or more."""
    if len(ranking) < 2:
        return None
    try:
        first, last = candidates[int(ranking[0])], candidates[int(ranking[-1])]
        return str(first["text"]), str(last["text"])
    except (IndexError, KeyError, TypeError, ValueError):
        raise DataError(f"a ranking {ranking!r} that does not fit the item's candidates") from None


def build(
    items: Iterable[dict[str, Any]],
    out_root: Path,
    *,
    data_dir: Path | None,
    general: int = 0,
    demos_dir: Path | None = None,
) -> Built:
    from classifiers.pii import redact

    blocked = evaluation_prompts(data_dir)
    sft: list[dict[str, Any]] = []
    dpo: list[dict[str, Any]] = []
    used: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    for number, item in enumerate(items, 1):
        try:
            record, final = item["record"], item["final"]
            prompt = [
                {"role": m["role"], "content": redact(m["content"])}
                for m in record["prompt"] or []
                if m.get("role") in ("system", "user", "assistant") and isinstance(m.get("content"), str)
            ]
            action = final["action"]
        except (KeyError, TypeError) as exc:
            raise DataError(f"item {number}: not a decided review item ({exc})") from None
        prompt = [m for m in prompt if m["role"] != "system"]  # the safety system prompt stays out
        if not prompt or prompt[-1]["role"] != "user":
            skipped["no user prompt"] += 1
            continue
        if any(digest(m["content"]) in blocked for m in prompt if m["role"] == "user"):
            skipped["decontaminated (an evaluation prompt)"] += 1
            continue
        language = record.get("language") or "en"
        ideal = redact(final["ideal_answer"]) if final.get("ideal_answer") else None
        served = record.get("response")
        guard_refused = record.get("action") in ("refuse", "escalate")
        # the model's own answer that an AI label replaces (regenerated: the gateway never stores it)
        own = redact(final["rejected_answer"]) if final.get("rejected_answer") else None
        if action == "allow":
            if ideal is None:
                skipped["allowed without an ideal answer"] += 1
                continue
            sft.append({"messages": [*prompt, {"role": "assistant", "content": ideal}], "lang": language})
            rejected = redact(served) if guard_refused and served else own
            if rejected and normalise(rejected) != normalise(ideal):
                dpo.append(_pair(prompt, ideal, rejected))
        elif action in ("refuse", "escalate"):
            served_refusal = redact(served) if guard_refused and served else None
            refusal = ideal or served_refusal or REFUSALS.get(language, REFUSALS["en"])
            sft.append({"messages": [*prompt, {"role": "assistant", "content": refusal}], "lang": language})
            if own and normalise(own) != normalise(refusal):
                dpo.append(_pair(prompt, refusal, own))
        else:
            skipped[f"final action {action} (not trained on yet)"] += 1
            continue
        ranked = _ranked(item.get("candidates") or [], final.get("ranking") or [])
        if ranked is not None:
            best, worst = (redact(x) for x in ranked)
            if normalise(best) != normalise(worst):
                dpo.append(_pair(prompt, best, worst))
        categories[final.get("category") or "none"] += 1
        languages[language] += 1
        used.append({
            "request_id": record.get("request_id"),
            "final": action,
            "provenance": {"kind": "ai", **final["ai"]} if final.get("ai") else {"kind": "human"},
            "labels": len(item.get("labels") or []),
            "ranked": ranked is not None,
            "agreed": len({(x.get("action"), x.get("category")) for x in item.get("labels") or []}) <= 1,
            "adapter": record.get("adapter"),
            "policy_version": record.get("policy_version"),
            "prompt_sha256": digest(_last_user(prompt)),
        })  # fmt: skip
    general_examples = []
    if general:
        demos = demo_conversations(
            demos_dir or Path(__file__).resolve().parent / "data" / "assistant" / "demos"
        )
        general_examples = [
            {"messages": [{"role": r, "content": c} for r, c in conv.messages], "lang": conv.lang}
            for conv in _against_forgetting(demos, general)
        ]
    files = {
        "sft.jsonl": "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in [*sft, *general_examples]),
        "dpo.jsonl": "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in dpo),
    }
    version = hashlib.sha256("".join(files[k] for k in sorted(files)).encode()).hexdigest()[:12]
    directory = out_root / f"safety-{version}"
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    manifest = {
        "version": f"safety-{version}",
        "files": {k: hashlib.sha256(v.encode()).hexdigest() for k, v in files.items()},
        "counts": {"sft": len(sft), "dpo": len(dpo), "general": len(general_examples), "items": len(used)},
        "skipped": dict(skipped),
        "categories": dict(categories),
        "languages": dict(languages),
        "agreement": sum(u["agreed"] for u in used) / len(used) if used else None,
        "provenance": dict(Counter(u["provenance"]["kind"] for u in used)),
        "items": used,
        "de_identified": True,
    }
    (directory / "manifest.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    return Built(f"safety-{version}", directory, manifest)
