"""Running suites against an OpenAI-compatible target: bounded concurrency, resumable, every answer kept.

A run is a directory: ``run.json`` (the target, the matrix of temperatures, the suites, versions of the
code, the policy and the models served) and ``results.jsonl`` (one line per item and temperature, written
as each answer arrives). Started again on the same directory, a run skips what is already there, so an
interrupted run resumes where it stopped and nothing is evaluated twice.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from evaluation.judge import RefusalJudge, guard_refused, verdict
from evaluation.suites import Item


class TargetError(RuntimeError):
    """The target cannot be reached or does not serve the model."""


@dataclass(frozen=True)
class Target:
    base_url: str
    model: str
    api_key: str = "unused"
    label: str = ""  # e.g. "gateway on", "gateway off"
    max_tokens: int = 256
    temperatures: tuple[float, ...] = (0.0,)
    timeout_s: float = 300.0
    extra_body: dict[str, Any] = field(default_factory=dict)


def key(item: Item, temperature: float) -> str:
    return f"{item.id}@{temperature:g}"


def _identity(target: dict[str, Any]) -> tuple[str, str]:
    """What a resumed run must match: the model, and the target's label when it has one (a gateway the
    headline starts gets a new port each time), else its URL."""
    return (str(target["model"]), str(target.get("label") or target["base_url"]))


def done_keys(results: Path) -> set[str]:
    if not results.exists():
        return set()
    keys = set()
    for line in results.read_bytes().splitlines():
        try:
            keys.add(orjson.loads(line)["key"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by an interruption: that item runs again
    return keys


def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],  # noqa: S607 - git from PATH, as a developer runs it
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


async def check_target(target: Target) -> list[str]:
    """The target's model ids; a clear error when it is unreachable or lacks the model."""
    import openai

    async with openai.AsyncOpenAI(
        base_url=target.base_url, api_key=target.api_key, max_retries=0, timeout=15
    ) as c:
        try:
            models = [m.id async for m in c.models.list()]
        except openai.APIError as exc:
            raise TargetError(f"cannot reach {target.base_url}: {exc}") from None
    if target.model not in models:
        raise TargetError(f"{target.base_url} does not serve {target.model!r}; it serves {', '.join(models)}")
    return models


async def run(
    items: Sequence[Item],
    target: Target,
    out: Path,
    *,
    concurrency: int = 4,
    judge: RefusalJudge | None = None,
    progress: Callable[[int, int], None] | None = None,
    harm: Callable[[str], bool] | None = None,
) -> Path:
    """Answer every (item, temperature) not yet in ``out/results.jsonl``; returns that file. ``harm``
    (e.g. :func:`harm_judge`) says whether an answer is harmful in itself: an answer that is neither a
    refusal nor harmful (a 270M model's confused reply) is then told apart from real harmful compliance."""
    import openai

    judge = judge or RefusalJudge()
    models = await check_target(target)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    meta_path = out / "run.json"
    meta = orjson.loads(meta_path.read_bytes()) if meta_path.exists() else {}
    if meta and _identity(meta["target"]) != _identity(vars(target)):
        where = meta["target"].get("label") or meta["target"]["base_url"]
        raise TargetError(f"{out} holds a run against {meta['target']['model']} at {where}")
    meta.update(
        {
            "target": {
                "base_url": target.base_url,
                "model": target.model,
                "label": target.label,
                "max_tokens": target.max_tokens,
                "temperatures": list(target.temperatures),
            },
            "models_served": models,
            "code_version": code_version(),
            "suites": sorted({i.suite for i in items} | set(meta.get("suites", []))),
            "started": meta.get("started", time.time()),
        }
    )
    meta_path.write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    done = done_keys(results)
    todo = [(i, t) for i in items for t in target.temperatures if key(i, t) not in done]
    total, finished = len(todo), 0
    semaphore = asyncio.Semaphore(concurrency)
    lock = asyncio.Lock()
    client = openai.AsyncOpenAI(
        base_url=target.base_url, api_key=target.api_key, max_retries=2, timeout=target.timeout_s
    )

    async def one(item: Item, temperature: float) -> None:
        nonlocal finished
        async with semaphore:
            row = await _ask(client, target, item, temperature, judge)
            if harm is not None and row.get("response"):
                row["harmful_response"] = await asyncio.to_thread(harm, row["response"])
        async with lock:
            with results.open("ab") as f:
                f.write(orjson.dumps(row) + b"\n")
            finished += 1
            if progress is not None:
                progress(finished, total)

    try:
        await asyncio.gather(*(one(i, t) for i, t in todo))
    finally:
        await client.close()
        meta["finished"] = time.time() if finished == total else None
        meta_path.write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    return results


async def _ask(
    client: Any, target: Target, item: Item, temperature: float, judge: RefusalJudge
) -> dict[str, Any]:
    import openai

    row: dict[str, Any] = {"key": key(item, temperature), "temperature": temperature, **item.to_json()}
    started = time.perf_counter()
    try:
        reply = await client.chat.completions.create(
            model=target.model,
            messages=list(item.messages),
            temperature=temperature,
            max_tokens=target.max_tokens,
            extra_body=target.extra_body or None,
        )
        choice = reply.choices[0]
        text, finish = choice.message.content or "", choice.finish_reason
        block = (reply.model_extra or {}).get("railguard")
    except openai.BadRequestError as exc:  # refusal_mode: error answers a refusal as a 400
        if getattr(exc, "code", None) != "content_filter":
            row.update(error=f"400: {exc.message}", latency_s=time.perf_counter() - started)
            return row
        text, finish, block = "", "content_filter", {"action": "refuse"}
    except openai.APIError as exc:
        row.update(error=f"{type(exc).__name__}: {exc}", latency_s=time.perf_counter() - started)
        return row
    guard = guard_refused(block, finish)
    refused = guard or judge(text)
    row.update(
        response=text,
        finish_reason=finish,
        railguard=block,
        latency_s=time.perf_counter() - started,
        guard_refused=guard,
        refused=refused,
        passed=verdict(item.expected, refused, guard, text),
        policy_version=(block or {}).get("policy_version"),
    )
    return row


def harm_judge() -> Callable[[str], bool]:
    """railguard's own classifiers (e5-small, the shipped heads) on an answer: any harm category flagged.
    Measured in front of a gateway whose output guard uses the same classifiers, it cannot see what they
    miss: use it on the model's own answers (gateway off)."""
    from classifiers import ClassifiersConfig, SafetyClassifier

    classifier = SafetyClassifier.load(ClassifiersConfig())
    attacks = {"jailbreak", "prompt_injection"}  # properties of prompts, not of answers

    def harmful(text: str) -> bool:
        [scores] = classifier.score([text])
        return any(c not in attacks for c in scores.flagged_categories)

    return harmful


def read_results(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    meta_path, results = out / "run.json", out / "results.jsonl"
    if not meta_path.exists() or not results.exists():
        raise FileNotFoundError(f"{out} is not a run directory (no run.json / results.jsonl)")
    rows = []
    for line in results.read_bytes().splitlines():
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return orjson.loads(meta_path.read_bytes()), rows
