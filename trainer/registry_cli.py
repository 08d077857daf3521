"""`railguard registry list|show|register|promote|reject|rollback|diff`: adapter versions and what is served.

    railguard registry register path/to/adapter --name assistant [--parent assistant@abc] [--lineage run.json]
    railguard registry promote assistant@0123456789ab --reason "gate passed: docs/..." [--model gemma-3-270m]
    railguard registry rollback --reason "over-refusal up in de" [--model gemma-3-270m]

The registry lives in `<cache_dir>/registry` (`--registry` to choose); a running gateway with the same
cache directory follows promotions and rollbacks without a restart.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from trainer.registry import Registry, RegistryError


def _default_root() -> Path:
    from gateway.settings import Settings

    return Settings().registry_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="railguard registry", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "--registry", type=Path, help="the registry directory (default: <cache_dir>/registry)"
    )
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="every version, oldest first, and what each model serves")
    p = sub.add_parser("show", help="one version: lineage and events")
    p.add_argument("version")
    p = sub.add_parser("register", help="copy an adapter in as a candidate")
    p.add_argument("adapter", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--parent")
    p.add_argument(
        "--lineage", type=Path, help="a JSON file of lineage fields (datasets, config, evaluation)"
    )
    for action in ("promote", "reject"):
        p = sub.add_parser(action, help=f"{action} a version")
        p.add_argument("version")
        p.add_argument("--reason", required=True)
        p.add_argument("--model", default="gemma-3-270m")
    p = sub.add_parser("rollback", help="serve the version promoted before the current one")
    p.add_argument("--reason", required=True)
    p.add_argument("--model", default="gemma-3-270m")
    p = sub.add_parser("diff", help="how two versions' lineage differs")
    p.add_argument("a")
    p.add_argument("b")
    args = parser.parse_args(argv)
    actor = getpass.getuser()
    try:
        registry = Registry(args.registry or _default_root())
        if args.action == "list":
            for v in registry.versions():
                print(f"{v.version:32} {v.status:12} parent={v.parent or '-'}")
            for pointer in sorted((registry.root / "serving").glob("*.json")):
                print(f"serving {pointer.stem}: {registry.serving(pointer.stem)}")
        elif args.action == "show":
            shown = registry.get(args.version).to_json()
            shown["events"] = registry.events(args.version)
            print(json.dumps(shown, indent=2, default=str))
        elif args.action == "register":
            lineage = json.loads(args.lineage.read_text(encoding="utf-8")) if args.lineage else {}
            if not isinstance(lineage, dict):
                raise RegistryError(f"{args.lineage} must hold a JSON object")
            print(registry.register(args.adapter, name=args.name, parent=args.parent, **lineage).version)
        elif args.action == "promote":
            registry.promote(args.version, model=args.model, actor=actor, reason=args.reason)
            print(f"{args.model} now serves {args.version}")
        elif args.action == "reject":
            registry.reject(args.version, actor=actor, reason=args.reason)
        elif args.action == "rollback":
            back = registry.rollback(model=args.model, actor=actor, reason=args.reason)
            print(f"{args.model} now serves {back.version}")
        else:
            print(json.dumps(registry.diff(args.a, args.b), indent=2, default=str))
    except (RegistryError, OSError, json.JSONDecodeError) as exc:
        print(f"railguard registry: {exc}", file=sys.stderr)
        return 2
    return 0
