"""Bounded label values: what a label may take, so that no request can create a new time series.

Each label is a `BoundedLabel`: values from a known set pass (tenants and categories from the
configuration, ISO 639-1 languages); with no known set, the first `limit` distinct values pass.
Everything else becomes `OTHER`, and a missing value becomes the label's `missing` value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["LANGUAGES", "OTHER", "STATUS_CODES", "BoundedLabel", "status_label"]

OTHER = "other"

#: Languages a language-id model reports often enough to deserve their own series; "und" = unknown.
_LANGUAGE_CODES = "ar bg bn ca cs da de el en es et fa fi fr he hi hr hu id it ja ko lt lv ms nl no pl"
LANGUAGES = frozenset((_LANGUAGE_CODES + " pt ro ru sk sl sr sv sw ta th tl tr uk ur vi zh und").split())

#: HTTP statuses the gateway answers with (see gateway.errors); anything else is "other".
STATUS_CODES = frozenset(
    str(s) for s in (200, 400, 401, 403, 404, 405, 408, 409, 413, 422, 429, 499, 500, 502, 503, 504)
)

_SAFE = re.compile(r"[^A-Za-z0-9_.:/@+-]")
_MAX_LEN = 64


class BoundedLabel:
    """Maps raw values onto a bounded set of label values."""

    __slots__ = ("_allowed", "_limit", "_missing", "_seen")

    def __init__(
        self, allowed: Iterable[str] | None = None, *, limit: int = 32, missing: str = "none"
    ) -> None:
        self._allowed = frozenset(allowed) if allowed is not None else None
        self._limit = limit
        self._missing = missing
        self._seen: dict[str, str] = {}

    def __call__(self, value: str | None) -> str:
        if not value:
            return self._missing
        seen = self._seen.get(value)
        if seen is not None:
            return seen
        return self._admit(value)

    def _admit(self, value: str) -> str:
        if self._allowed is not None:
            label = value if value in self._allowed else OTHER
        elif len(self._seen) < self._limit:
            label = _SAFE.sub("_", value)[:_MAX_LEN]
        else:
            return OTHER  # not cached: the cache stays bounded too
        if len(self._seen) < 4 * self._limit + len(self._allowed or ()):
            self._seen[value] = label
        return label


def status_label(status: int) -> str:
    text = str(status)
    return text if text in STATUS_CODES else OTHER
