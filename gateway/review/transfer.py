"""Reading review imports (JSONL from teams that label elsewhere): every line checked, errors by line."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from pydantic import ValidationError

from gateway.review.model import Label, ReviewError


def parse_import(lines: Iterable[str]) -> list[tuple[str, Any]]:
    """[("label", (request_id, reviewer, Label)) | ("gold", (record, Label))]; a bad line is a
    ReviewError naming its number, raised before anything is written."""
    parsed: list[tuple[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            parsed.append(_import_line(orjson.loads(line)))
        except (orjson.JSONDecodeError, ValidationError, KeyError, TypeError, ValueError) as exc:
            raise ReviewError(f"line {number}: {_short(exc)}") from None
    return parsed


def _import_line(data: Any) -> tuple[str, Any]:
    if not isinstance(data, dict):
        raise ValueError("each line must be a JSON object")
    kind = data.get("type")
    if kind == "label":
        request_id, reviewer = data["request_id"], data["reviewer"]
        if not isinstance(request_id, str) or not isinstance(reviewer, str) or not reviewer:
            raise ValueError("request_id and reviewer must be strings")
        return "label", (request_id, reviewer, Label.model_validate(data["label"]))
    if kind == "gold":
        record = data["record"]
        if not isinstance(record, dict) or not isinstance(record.get("request_id"), str):
            raise ValueError("a gold item's record needs a request_id")
        return "gold", (record, Label.model_validate(data["answer"]))
    raise ValueError(f'"type" must be "label" or "gold", got {kind!r}')


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc)
