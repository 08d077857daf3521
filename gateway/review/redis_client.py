"""The review state's Redis connection and key layout (`gateway.review.redis_queue` is the queue on it).

Every key is under one prefix (one hash tag, so one Redis Cluster slot: a transaction may touch any):

    item:{id}        hash    the item: its record, reason, priority, status, gold answer, final label,
                             candidate answers
    labels:{id}      hash    reviewer -> {"created", "label"}
    items            zset    every item, by order of entry (exports, statistics)
    open             zset    open items to serve, by -priority then order of entry (``seq:id`` members)
    adjudication     zset    disputed items, in the same order
    gold             zset    gold items, by order of entry
    ai               hash    request id -> an AI's label beside the open item
    audit            stream  every audit event, once; ``audit:{id}`` lists the ids of an item's events
    roles, meta      hashes  role overrides; intake cursors and per-reviewer served counts
    entered:{day}    hash    [reason, category, language] -> items let in that UTC day (daily quotas)
    seq              string  the order of entry

A change is read under WATCH, decided in Python and written in one MULTI/EXEC together with its audit
events (`RedisState._transaction`), so another replica's concurrent change makes it start again rather
than half-apply. A Redis that does not answer is a `ReviewUnavailableError` (503), never a traceback.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway.errors import ReviewUnavailableError
from gateway.review.model import Label

__all__ = [
    "CHUNK",
    "DAY_S",
    "Keys",
    "Pipeline",
    "RedisState",
    "answering",
    "answers",
    "request_id_of",
    "stored_labels",
]

P = ParamSpec("P")
T = TypeVar("T")
# a redis-py pipeline; typed Any because redis-py types replies as bytes | str and ours are str
# (decode_responses) or numbers
Pipeline = Any
CHUNK = 200
DAY_S = 86400

# KEYS[1]: the audit stream; KEYS[2]: the list of the item's event ids (kept only with a request id).
# ARGV: at, actor, event, request id ('' for none), detail JSON. Run inside MULTI: XADD's id is needed.
_AUDIT = """
local id = redis.call('XADD', KEYS[1], '*', 'at', ARGV[1], 'actor', ARGV[2], 'event', ARGV[3],
                      'request_id', ARGV[4], 'detail', ARGV[5])
if ARGV[4] ~= '' then redis.call('RPUSH', KEYS[2], id) end
return id
"""


@contextmanager
def answering() -> Iterator[None]:
    """Redis errors (down, timed out, a connection lost mid-transaction) as a 503."""
    try:
        yield
    except (redis.RedisError, OSError) as exc:
        raise ReviewUnavailableError(
            f"The review queue's store (Redis) does not answer ({type(exc).__name__}); nothing was "
            "changed. Try again."
        ) from exc


def answers(fn: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        with answering():
            return fn(*args, **kwargs)

    return call


class Keys:
    """The queue's key names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.items, self.open, self.adjudication = prefix + "items", prefix + "open", prefix + "adjudication"
        self.gold, self.audit, self.ai = prefix + "gold", prefix + "audit", prefix + "ai"
        self.roles, self.meta, self.seq = prefix + "roles", prefix + "meta", prefix + "seq"

    def item(self, request_id: str) -> str:
        return f"{self.prefix}item:{request_id}"

    def labels(self, request_id: str) -> str:
        return f"{self.prefix}labels:{request_id}"

    def events(self, request_id: str) -> str:
        return f"{self.prefix}audit:{request_id}"

    def entered(self, day: int) -> str:
        return f"{self.prefix}entered:{day}"


def request_id_of(member: str) -> str:
    """The request id in a queue member ``seq:id``."""
    return member.split(":", 1)[1]


def stored_labels(raw: dict[str, str]) -> list[tuple[str, float, Label]]:
    """(reviewer, created, label), oldest first: a changed label counts from when it was changed."""
    decoded = [(name, orjson.loads(value)) for name, value in raw.items()]
    rows = [(name, float(v["created"]), Label.model_validate(v["label"])) for name, v in decoded]
    return sorted(rows, key=lambda row: row[1])


class RedisState:
    """A connection to the review state in Redis, and the two things every change needs: a watched
    transaction and audit events written inside it."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "{railguard}:review:",
        labels_per_item: int = 2,
        gold_every: int = 10,
        timeout_s: float = 2.0,
    ) -> None:
        self.labels_per_item = labels_per_item
        self.gold_every = gold_every
        self.keys = Keys(prefix)
        # one retry: a pooled connection that Redis closed (a restart) is replaced at once; a watched
        # transaction is never retried by the client (it starts again here, from its reads)
        self._client: Any = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )

    def close(self) -> None:
        self._client.close()

    def _transaction(self, fn: Callable[[Pipeline], T], *watched: str) -> T:
        """``fn`` reads (under WATCH), calls ``multi()`` and queues its writes; run again from its
        reads when another client changed a watched key first."""
        result: T = self._client.transaction(fn, *watched, value_from_callable=True)
        return result

    def _audit(self, pipe: Pipeline, actor: str, event: str, request_id: str | None, **detail: Any) -> None:
        keys = self.keys
        pipe.eval(
            _AUDIT, 2, keys.audit, keys.events(request_id or ""),
            repr(time.time()), actor, event, request_id or "", orjson.dumps(detail).decode(),
        )  # fmt: skip

    def _all_items(self, *fields: str) -> Iterator[tuple[str, list[str | None], dict[str, str]]]:
        """(request id, the item's ``fields``, its labels) of every item, in order of entry."""
        start = 0
        while ids := self._client.zrange(self.keys.items, start, start + CHUNK - 1):
            with self._client.pipeline(transaction=False) as pipe:
                for request_id in ids:
                    pipe.hmget(self.keys.item(request_id), list(fields))
                    pipe.hgetall(self.keys.labels(request_id))
                replies = pipe.execute()
            for n, request_id in enumerate(ids):
                yield request_id, replies[2 * n], replies[2 * n + 1]
            start += CHUNK
