"""The gateway's commands: serve, prepare models, read records, API keys (`railguard/cli.py` dispatches
the rest)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.review.store import ReviewStore


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "policy_file", "allow_unauthenticated", "keys_file"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "redis_url", None):
        overrides["redis_url"] = args.redis_url
    if getattr(args, "upstream", None):
        overrides["upstream"] = {"url": args.upstream, "api_key": args.upstream_api_key}
    return Settings.load(args.config, **overrides)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.auth import Authenticator
    from gateway.drain import serve as drain_and_serve
    from gateway.slow_clients import header_timeout_protocol
    from gateway.telemetry import configure_json_logging

    settings = _settings(args)
    configure_json_logging(settings.log_level)
    keys = Authenticator(settings).enabled  # the settings' keys and the keys file's
    if not _loopback(settings.host) and not keys and not settings.allow_unauthenticated:
        raise ValueError(
            f"{settings.host} is not a loopback address and no API keys are configured, so anyone who can "
            "connect could use the gateway: create keys (`railguard keys create --tenant NAME`) or "
            "configure tenants' api_key_sha256, or pass "
            "--allow-unauthenticated (allow_unauthenticated: true) if a proxy in front authenticates"
        )
    from gateway.backends.local.convert import prepare, probe_model_dir

    if (settings.local is not None and settings.local.path is None) or probe_model_dir(settings):
        prepare(settings)  # convert the PyPI model once; later starts find it cached
    if settings.local is not None:
        _import_model_libraries()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        http=header_timeout_protocol(settings.limits),  # uvicorn has no clock on a request's headers
        timeout_graceful_shutdown=5,  # after the drain, nothing should be left to wait for
    )
    services = app.state.services
    drain_and_serve(config, services.drain, services.limiter.in_flight)
    return 0


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _import_model_libraries() -> None:
    """Import what the local model's loader and the classifiers' build need, here, before their threads
    start: transformers resolves names lazily and two threads resolving them at once can fail
    ("cannot import name 'BertConfig' from 'transformers'", seen on a first start that exported the
    classifiers while the model loaded). Local mode imports all of it anyway."""
    import peft  # noqa: F401
    from transformers import (  # noqa: F401
        AutoModelForCausalLM,
        AutoTokenizer,
        BertConfig,
        BertModel,
    )


def prepare(args: argparse.Namespace) -> int:
    from gateway.backends.local.convert import prepare as prepare_local
    from gateway.backends.local.convert import probe_model_dir

    settings = _settings(args)
    converted = prepare_local(settings)
    if converted is not None:
        print(f"local model ready at {converted}")
    if (probe := probe_model_dir(settings)) is not None:
        print(f"the classifiers' probe model ready at {probe}")
    return 0


def records(args: argparse.Namespace) -> int:
    from gateway.sinks.sqlite import read_records

    path = _settings(args).sink_path
    if not path.exists():
        print(f"no records yet ({path})", file=sys.stderr)
        return 0
    for record in read_records(path, limit=args.limit):
        sys.stdout.write(orjson.dumps(record).decode() + "\n")
    return 0


def review(args: argparse.Namespace) -> int:
    """`railguard review key|stats|export|import`: the review queue from the command line."""
    if args.action == "key":
        import hashlib
        import secrets

        key = "rv-" + secrets.token_urlsafe(24)
        print(f"key:            {key}\napi_key_sha256: {hashlib.sha256(key.encode()).hexdigest()}")
        print("(give the key to the reviewer; put only the sha256 under review.reviewers in the settings)")
        return 0
    from gateway.errors import ReviewUnavailableError
    from gateway.review.store import open_review_store

    store = open_review_store(_settings(args))
    try:
        return _review_store(args, store)
    except ReviewUnavailableError as exc:
        print(f"railguard review {args.action}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _review_store(args: argparse.Namespace, store: ReviewStore) -> int:
    from gateway.review.store import ReviewError

    if args.action == "stats":
        sys.stdout.write(orjson.dumps(store.stats(), option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.action == "export":
        out = open(args.out, "wb") if args.out else sys.stdout.buffer  # noqa: SIM115
        try:
            count = 0
            for item in store.export(include_ai=args.with_ai):
                out.write(orjson.dumps(item) + b"\n")
                count += 1
        finally:
            if args.out:
                out.close()
        kind = "decided or AI-labelled" if args.with_ai else "decided"
        print(f"exported {count} {kind} items", file=sys.stderr)
    else:
        if args.file is None:
            print("railguard review import: give a JSONL file", file=sys.stderr)
            return 2
        try:
            with open(args.file, encoding="utf-8") as lines:
                counts = store.import_lines(lines, actor=args.actor)
        except (OSError, UnicodeDecodeError) as exc:
            print(f"railguard review import: cannot read {args.file}: {exc}", file=sys.stderr)
            return 2
        except ReviewError as exc:
            print(f"railguard review import: {args.file}: {exc}; nothing was imported", file=sys.stderr)
            return 2
        print(f"imported {counts['label']} labels and {counts['gold']} gold items")
    return 0


def keys(args: argparse.Namespace) -> int:
    """`railguard keys create|list|revoke`: API keys in the keys file (`gateway.keys`). Bad input raises
    `KeyFileError`, a ValueError: one line on stderr, status 2, the file unchanged."""
    from gateway.keys import create_key, read_keys, revoke_key

    path = _settings(args).keys_path
    if args.action == "create":
        key, entry = create_key(path, args.tenant, args.role, args.name)
        print(key)
        held = f", held by {entry.name}" if entry.name else ""
        print(
            f"created a key for tenant {entry.tenant}{held} (role {entry.role}, sha256 {entry.sha256[:12]}…) "
            f"in {path}; it is shown only this once",
            file=sys.stderr,
        )
    elif args.action == "list":
        stored = read_keys(path)
        if not stored:
            print(f"no keys in {path}", file=sys.stderr)
        else:
            print(f"{'TENANT':<24} {'NAME':<16} {'ROLE':<11} {'SHA256':<12}  CREATED")
        for k in stored:
            print(f"{k.tenant:<24} {k.name or '-':<16} {k.role:<11} {k.sha256[:12]}  {k.created}")
    else:
        gone = revoke_key(path, args.prefix)
        print(f"revoked the key {gone.sha256[:12]}… of tenant {gone.tenant} (role {gone.role})")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="railguard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", type=Path, help="YAML settings file")
        p.add_argument("--policy", dest="policy_file", type=Path, help="policy YAML file")
        p.add_argument("--upstream", help="an OpenAI-compatible base URL, e.g. http://h:8000/v1")
        p.add_argument("--upstream-api-key", help="bearer token for the upstream")
        p.add_argument("--redis-url", help="redis://host:6379/0: decision records to a Redis Stream")
        return p

    p = with_config(sub.add_parser("serve", help="run the gateway"))
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--allow-unauthenticated", action="store_true", default=None,
                   help="serve a non-loopback address with no API keys")  # fmt: skip
    p.set_defaults(func=serve)
    p = with_config(sub.add_parser("prepare", help="convert and cache the local model"))
    p.set_defaults(func=prepare)
    p = with_config(sub.add_parser("records", help="print recent decision records as JSONL"))
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=records)
    p = with_config(sub.add_parser("review", help="the review queue: key, stats, export, import (JSONL)"))
    p.add_argument("action", choices=["key", "stats", "export", "import"])
    p.add_argument("file", nargs="?", type=Path, help="import: the JSONL file")
    p.add_argument("--out", type=Path, help="export: write here instead of stdout")
    p.add_argument("--with-ai", action="store_true",
                   help="export: also items only an AI labelled (railguard label), marked so")  # fmt: skip
    p.add_argument("--actor", default="cli", help="import: who imports (the audit log names them)")
    p.set_defaults(func=review)
    p = sub.add_parser("keys", help="API keys: create (shown once), list, revoke; the keys file")
    actions = p.add_subparsers(dest="action", required=True)
    for name, about in [
        ("create", "make a key for a tenant; prints it once, stores only its sha256"),
        ("list", "tenant, name, role, digest prefix and creation time of each key (never the key)"),
        ("revoke", "remove the key whose sha256 starts with PREFIX; the gateway refuses it at once"),
    ]:
        a = actions.add_parser(name, help=about)
        a.add_argument("--config", type=Path, help="YAML settings file (keys_file, cache_dir)")
        a.add_argument("--keys-file", type=Path, help="default: keys_file, or <cache_dir>/keys.json")
        a.set_defaults(func=keys)
        if name == "create":
            a.add_argument("--tenant", required=True, help="the tenant the key calls as")
            a.add_argument("--role", default="user", help="user (default), reviewer, adjudicator or admin")
            a.add_argument("--name", help="who holds the key: the reviewer's name on the review page "
                           "(default: the tenant)")  # fmt: skip
        elif name == "revoke":
            a.add_argument("prefix", help="the first hex digits of the key's sha256 (`keys list`)")
    # Dispatched by the composition root (railguard/cli.py); listed here so that --help names them.
    sub.add_parser("classifiers", help="train, evaluate and build the safety classifiers", add_help=False)
    sub.add_parser("classify", help="classify text or JSONL from the command line", add_help=False)
    sub.add_parser("steer", help="extract, evaluate and list steering vectors", add_help=False)
    sub.add_parser("train", help="train LoRA adapters: sft, dpo, nightly (the whole loop)", add_help=False)
    sub.add_parser("label", help="AI labels (critique, revision) for unlabelled review items", add_help=False)
    sub.add_parser("data", help="build safety SFT/DPO data from reviewed items", add_help=False)
    sub.add_parser("registry", help="adapter versions: list, promote, rollback (hot reload)", add_help=False)
    sub.add_parser("eval", help="evaluate the assistant (IFEval and our held-out prompts)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:  # settings and policy errors: a message, not a traceback
        logging.getLogger("railguard").debug("startup failed", exc_info=True)
        print(f"railguard: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
