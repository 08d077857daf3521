"""`railguard train nightly`: the loop as one idempotent, resumable job.

    intake -> label -> data -> sft -> dpo -> register -> evaluate -> gate (promote or reject)

* **intake**: the records written since the last run (the Redis Stream's consumer group or the SQLite
  records) enter the review queue by its rules (docs/review.md);
* **label**: AI labels for the items no person has labelled (:mod:`trainer.label`);
* **data**: decided and AI-labelled items become a dataset version (:mod:`trainer.safety_data`); when it
  is the version the adapter in service was trained on, there is nothing new and the job ends here;
* **sft**, then **dpo**: LoRA training that starts from the adapter in service (checkpointed: a killed
  job resumes from its last checkpoint);
* **register**: the candidate enters the registry with its lineage (parent, dataset, configs, code);
* **evaluate**: the served adapter and the candidate answer the same suites with no guard (the model's
  own behaviour), judged by the refusal detector and the harm classifiers;
* **gate**: :func:`evaluation.gate.gate` decides from those numbers; the candidate is promoted (running
  gateways follow without a restart) or rejected with its reasons, both kept in the registry.

Each finished stage is written to ``<cache_dir>/nightly/current/state.json``; a rerun skips finished
stages, so the job is safe to restart at any point. A lock file keeps a second job from running beside
the first. Exit status: 0 done (promoted, rejected or nothing to do: the summary says which), 1 a stage
failed (rerun to resume), 2 bad settings, 75 another nightly job holds the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from trainer.config import DPOConfig, NightlyConfig, SFTConfig

__all__ = ["LOCKED", "Locked", "Nightly", "label_main", "lock", "main"]

log = logging.getLogger("railguard.nightly")
LOCKED = 75  # EX_TEMPFAIL: a scheduler may try again later
STAGES = ("intake", "label", "data", "sft", "dpo", "register", "evaluate", "gate")


class Locked(RuntimeError):
    """Another nightly job holds the lock."""


@contextlib.contextmanager
def lock(path: Path) -> Iterator[None]:
    """An exclusive lock held for the whole job (released by the OS if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise Locked(f"another nightly job is running ({holder}; lock {path})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()


class Nightly:
    def __init__(
        self,
        config: NightlyConfig,
        settings: Any,
        out: IO[str] | None = None,
        on_stage: Callable[[str], None] | None = None,
    ) -> None:
        """``settings``: the gateway's (stores, policy, cache); ``on_stage`` is called with each stage's
        name as it starts (progress reporting)."""
        from trainer.registry import Registry

        self.config = config
        self.settings = settings
        self.out = out or sys.stderr
        self.on_stage = on_stage
        self.root = settings.cache_dir / "nightly"
        self.current = self.root / "current"
        self.registry = Registry(settings.registry_dir)
        self._gateways = contextlib.ExitStack()
        self._gateway: tuple[str, str] | None = None  # (adapters served, base URL)

    # --- the job -----------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run (or resume) the job under the lock; the summary of what it did."""
        with lock(self.root / "lock"), self._gateways:
            state = self._load_state()
            steps: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
                "intake": self._intake, "label": self._label, "data": self._data, "sft": self._sft,
                "dpo": self._dpo, "register": self._register, "evaluate": self._evaluate, "gate": self._gate,
            }  # fmt: skip
            for number, name in enumerate(STAGES, 1):
                if state.get("outcome"):
                    break
                if name in state["stages"]:
                    self._say(f"[{number}/{len(STAGES)}] {name}: done before, skipped")
                    continue
                self._say(f"[{number}/{len(STAGES)}] {name} ...")
                if self.on_stage is not None:
                    self.on_stage(name)
                started = time.perf_counter()
                result = steps[name](state)
                result["wall_s"] = round(time.perf_counter() - started, 1)
                state["stages"][name] = result
                self._say(f"[{number}/{len(STAGES)}] {name}: {_brief(result)}")
                self._save_state(state)
            return self._finish(state)

    def label_only(self) -> dict[str, Any]:
        """The intake and label stages alone, under the job's lock (`railguard label`); their results."""
        self.current = self.root / "label"
        self.current.mkdir(parents=True, exist_ok=True)
        with lock(self.root / "lock"), self._gateways:
            return {"intake": self._intake({}), "label": self._label({})}

    def _load_state(self) -> dict[str, Any]:
        path = self.current / "state.json"
        if path.is_file():
            state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            done = ", ".join(state["stages"]) or "none"
            self._say(f"resuming nightly run {state['run']} (finished: {done})")
            return state
        self.current.mkdir(parents=True, exist_ok=True)
        state = {"run": time.strftime("%Y%m%d-%H%M%S"), "started": time.time(), "stages": {},
                 "config": _jsonable(asdict(self.config))}  # fmt: skip
        self._save_state(state)
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        tmp = self.current / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, self.current / "state.json")

    def _finish(self, state: dict[str, Any]) -> dict[str, Any]:
        state.setdefault("outcome", "done")
        state["finished"] = time.time()
        state["wall_s"] = round(state["finished"] - state["started"], 1)
        self._save_state(state)
        target = self.root / "runs" / state["run"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(self.current, target)
        state["directory"] = str(target)
        return state

    def _say(self, line: str) -> None:
        print(f"railguard nightly: {line}", file=self.out, flush=True)

    # --- stages ------------------------------------------------------------------------------------

    def _intake(self, state: dict[str, Any]) -> dict[str, Any]:
        from gateway.review.service import ReviewService

        service = ReviewService(self.settings)
        read, error = 0, None
        try:
            while True:
                batch = service.poll_once()
                read += batch
                if not batch:
                    break
        except Exception as exc:  # Redis down: what is queued already still trains
            error = f"{type(exc).__name__}: {exc}"
        finally:
            service.close()
        result: dict[str, Any] = {"records_read": read, "backlog": service.store.backlog()}
        if error:
            result["error"] = error
        return result

    def _label(self, state: dict[str, Any]) -> dict[str, Any]:
        from gateway.policy import PolicyEngine, load_policy
        from gateway.review.service import ReviewService
        from trainer.label import OpenAIChat, label_queue

        if self.config.label_limit <= 0:
            return {"skipped": "label_limit is 0"}
        store = ReviewService(self.settings).store
        if not store.needs_ai_label(1):
            return {"labelled": 0}
        answerer = OpenAIChat(self._local_gateway(), self.config.model)
        teacher = answerer
        if self.config.teacher_url:
            key = os.environ.get(self.config.teacher_api_key_env, "unused")
            teacher = OpenAIChat(self.config.teacher_url, self.config.teacher_model or self.config.model, key)
        engine = PolicyEngine(load_policy(self.settings.policy_file))
        return label_queue(
            store, teacher=teacher, answerer=answerer, engine=engine, limit=self.config.label_limit,
            spot_check=self.config.spot_check, max_tokens=self.config.max_tokens,
            min_score=self.config.label_min_score,
        )  # fmt: skip

    def _data(self, state: dict[str, Any]) -> dict[str, Any]:
        from gateway.review.service import ReviewService
        from trainer.safety_data import build

        items = list(ReviewService(self.settings).store.export(include_ai=True))
        if len(items) < max(self.config.min_items, 1):
            state["outcome"] = f"nothing to train on ({len(items)} labelled items)"
            return {"items": len(items)}
        built = build(
            items, self.settings.cache_dir / "datasets", data_dir=self._data_dir(),
            general=self.config.general,
        )  # fmt: skip
        self._serving()  # the adapter in service enters the registry on the first run
        earlier = [v for v in self.registry.versions()
                   if (v.lineage.get("dataset") or {}).get("version") == built.version]  # fmt: skip
        if earlier:
            state["outcome"] = (
                f"no new data: {built.version} already trained {earlier[-1].version} ({earlier[-1].status})"
            )
        counts = built.manifest["counts"]
        if counts["sft"] + counts["dpo"] == 0:
            state["outcome"] = f"nothing to train on in {built.version} ({built.manifest['skipped']})"
        return {"version": built.version, "directory": str(built.directory), "counts": counts,
                "provenance": built.manifest["provenance"], "skipped": built.manifest["skipped"]}  # fmt: skip

    def _sft(self, state: dict[str, Any]) -> dict[str, Any]:
        from trainer.sft import train

        data = state["stages"]["data"]
        if self.config.sft_max_steps <= 0 or not data["counts"]["sft"] + data["counts"]["general"]:
            return {"skipped": "no SFT examples or sft_max_steps 0"}
        c = self.config
        run = self.current
        config = SFTConfig(
            data_file=Path(data["directory"]) / "sft.jsonl", data_dir=self._train_data_dir(),
            cache_dir=self.settings.cache_dir, init_adapter=self._serving_path(),
            max_steps=c.sft_max_steps, batch_size=c.batch_size, gradient_accumulation=1,
            learning_rate=c.sft_learning_rate, max_length=c.max_length, threads=c.threads,
            output_dir=run / "sft", run_dir=run / "sft-checkpoints", save_steps=10, logging_steps=1,
            validation_share=0.0, save_dtype="float32",
        )  # fmt: skip
        summary = train(config)
        return {"adapter": summary.output_dir, **_jsonable(asdict(summary))}

    def _dpo(self, state: dict[str, Any]) -> dict[str, Any]:
        from trainer.dpo import train

        data = state["stages"]["data"]
        start = Path(state["stages"]["sft"].get("adapter") or self._serving_path())
        if self.config.dpo_max_steps <= 0 or not data["counts"]["dpo"]:
            return {"skipped": "no preference pairs or dpo_max_steps 0", "adapter": str(start)}
        c = self.config
        config = DPOConfig(
            data=Path(data["directory"]) / "dpo.jsonl", init_adapter=start,
            cache_dir=self.settings.cache_dir, beta=c.beta, max_steps=c.dpo_max_steps,
            batch_size=c.batch_size, gradient_accumulation=1, learning_rate=c.dpo_learning_rate,
            max_length=c.max_length, threads=c.threads, output_dir=self.current / "dpo",
            run_dir=self.current / "dpo-checkpoints", save_steps=10,
        )  # fmt: skip
        summary = train(config)
        return {"adapter": summary["output_dir"], **summary}

    def _register(self, state: dict[str, Any]) -> dict[str, Any]:
        from evaluation.runner import code_version

        stages = state["stages"]
        candidate = Path(stages["dpo"].get("adapter") or stages["sft"].get("adapter") or "")
        if not (candidate / "adapter_model.safetensors").is_file():
            state["outcome"] = "nothing was trained"
            return {"skipped": "no adapter trained"}
        serving = self._serving()
        data = stages["data"]
        version = self.registry.register(
            candidate, name=self.config.adapter_name, parent=serving.version if serving else None,
            dataset={"version": data["version"], "counts": data["counts"], "provenance": data["provenance"]},
            training={k: stages[k] for k in ("sft", "dpo")}, nightly_run=state["run"],
            code_version=code_version(), config=state["config"],
        )  # fmt: skip
        return {"version": version.version, "path": str(version.path)}

    def _evaluate(self, state: dict[str, Any]) -> dict[str, Any]:
        import asyncio

        from evaluation.report import summarise
        from evaluation.runner import Target, harm_judge, read_results, run
        from evaluation.runner import key as result_key
        from evaluation.suites import load

        candidate = state["stages"]["register"]["path"]
        adapters = {"serving": str(self._serving_path()), "candidate": candidate}
        items = load(list(self.config.eval_suites), self._data_dir(), self.config.eval_limit)
        wanted = {result_key(item, 0.0) for item in items}
        judge = harm_judge()
        summaries: dict[str, Any] = {}
        url = self._local_gateway(adapters)
        for name in adapters:
            out = self.current / "eval" / name
            target = Target(url, name, label=f"nightly {name}", max_tokens=self.config.max_tokens)
            asyncio.run(run(items, target, out, concurrency=4, harm=judge))
            meta, rows = read_results(out)
            summaries[name] = summarise(meta, [r for r in rows if r["key"] in wanted])
        (self.current / "eval" / "reports.json").write_text(json.dumps(summaries, indent=2), encoding="utf-8")
        quality = self._quality(url, Path(adapters["serving"]), Path(candidate))
        return {"items": len(items), "reports": str(self.current / "eval" / "reports.json"),
                "headline": {n: _headline(s) for n, s in summaries.items()}, "quality": quality}  # fmt: skip

    def _quality(self, url: str, serving: Path, candidate: Path) -> dict[str, Any]:
        """Ordinary work: IFEval answered through the gateway, perplexity and KL on held-out text."""
        c = self.config
        quality: dict[str, Any] = {}
        data_dir = self._data_dir()
        if c.ifeval_limit > 0 and data_dir is not None:
            quality["ifeval"] = self._ifeval(url, data_dir)
        if c.drift_texts > 0 and data_dir is not None:
            from gateway.backends.local.convert import ensure_model
            from trainer.drift import drift, heldout_conversations

            model_dir = ensure_model(self.settings.local, self.settings.cache_dir)
            texts = heldout_conversations(data_dir, c.drift_texts)
            quality.update(drift(model_dir, serving, candidate, texts, threads=c.threads))
        return quality

    def _gate(self, state: dict[str, Any]) -> dict[str, Any]:
        from evaluation.gate import Decision, Thresholds, gate, quality_reasons

        c = self.config
        reports = json.loads(Path(state["stages"]["evaluate"]["reports"]).read_text(encoding="utf-8"))
        thresholds = Thresholds(c.harmful_margin, c.over_refusal_margin, tuple(c.improve),
                                c.max_perplexity_increase, c.ifeval_margin)  # fmt: skip
        decision = gate(reports["candidate"], reports["serving"], thresholds)
        quality = state["stages"]["evaluate"].get("quality") or {}
        worse = quality_reasons(quality, thresholds)
        decision = Decision(decision.passed and not worse, [*decision.reasons, *worse])
        version = state["stages"]["register"]["version"]
        evaluation = {"candidate": _headline(reports["candidate"]), "serving": _headline(reports["serving"]),
                      "quality": {k: v for k, v in quality.items() if k != "assistant"},
                      "thresholds": asdict(thresholds), "passed": decision.passed,
                      "reasons": decision.reasons}  # fmt: skip
        self.registry.annotate(version, evaluation=evaluation)
        if decision.passed:
            self.registry.promote(version, model=c.model, actor="nightly",
                                  reason=f"gate passed (nightly run {state['run']})")  # fmt: skip
            state["outcome"] = f"promoted {version}"
        else:
            self.registry.reject(version, actor="nightly", reason="; ".join(decision.reasons))
            state["outcome"] = f"rejected {version}"
        return {"passed": decision.passed, "reasons": decision.reasons, "version": version}

    def _ifeval(self, url: str, data_dir: Path) -> dict[str, Any]:
        """IFEval prompt-level strict of both adapters, answered through the gateway (answers kept)."""
        import asyncio

        from classifiers.refusals import is_refusal
        from evaluation.assistant import ask_all, ifeval_prompts, summarise, write_answers

        prompts, items = ifeval_prompts(data_dir, self.config.ifeval_limit)
        out: dict[str, Any] = {}
        for name in ("serving", "candidate"):
            answers = asyncio.run(ask_all(url, name, prompts, max_tokens=max(self.config.max_tokens, 256),
                                          concurrency=4))  # fmt: skip
            write_answers(self.current / "eval" / "ifeval" / f"{name}.jsonl", answers)
            figures = summarise(answers, is_refusal, items)
            n = int(figures["ifeval_n"])
            out[name] = {"k": round(figures["ifeval_prompt_level_strict"] * n), "n": n, **figures}
        return out

    # --- helpers -----------------------------------------------------------------------------------

    def _data_dir(self) -> Path | None:
        path = self.config.resolved(self.config.data_dir)
        return path if path.is_dir() else None

    def _train_data_dir(self) -> Path:
        return self.config.resolved(self.config.data_dir)

    def _serving(self) -> Any:
        """The registry version in service, registering the adapter the gateway serves by default the
        first time (so that every candidate has a parent and a rollback target)."""
        current = self.registry.serving(self.config.model)
        if current is not None:
            return self.registry.get(current)
        default = self.settings.local.merged_adapter
        if default is None:
            return None
        first = self.registry.register(
            default, name=self.config.adapter_name, origin="served before the registry"
        )
        self.registry.promote(first.version, model=self.config.model, actor="nightly",
                              reason="the adapter served before the first nightly run")  # fmt: skip
        return self.registry.get(first.version)

    def _serving_path(self) -> Path:
        serving = self._serving()
        if serving is None:
            raise RuntimeError(f"{self.config.model} is served without an adapter: nothing to train on")
        return Path(serving.path)

    def _local_gateway(self, adapters: dict[str, str] | None = None) -> str:
        """A `railguard serve` with no guard (the model's own answers) for the label stage, or serving
        the candidate beside the served adapter for the evaluation; one at a time, kept until the job
        ends or the other is needed."""
        from evaluation.headline import OFF
        from evaluation.serve import gateway_process

        wanted = json.dumps(adapters, sort_keys=True)
        if self._gateway is not None and self._gateway[0] == wanted:
            return self._gateway[1]
        self._gateways.close()
        local = dict(self.settings.local.model_dump(mode="json", exclude_none=True))
        if adapters:
            local["adapters"] = adapters
        settings = {**OFF, "cache_dir": str(self.settings.cache_dir), "local": local,
                    "sink": {"kind": "sqlite", "path": str(self.current / "answers.sqlite3")}}  # fmt: skip
        log_path = self.current / ("eval" if adapters else "label") / "gateway.log"
        url = self._gateways.enter_context(gateway_process(settings, log_path))
        self._gateway = (wanted, url)
        return url


def _headline(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        suite: {m: s[m]["rate"] for m in ("harmful_compliance", "over_refusal") if s.get(m, {}).get("n")}
        for suite, s in summary["suites"].items()
    }


def _brief(result: dict[str, Any]) -> str:
    shown = {k: v for k, v in result.items() if k not in ("headline", "config", "provenance")}
    text = json.dumps(shown, default=str)
    return text if len(text) < 300 else text[:297] + "..."


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def main(config: NightlyConfig) -> int:
    from gateway.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = Settings.load(config.settings)
    except (ValueError, OSError) as exc:
        print(f"railguard train nightly: {exc}", file=sys.stderr)
        return 2
    try:
        summary = Nightly(config, settings).run()
    except Locked as exc:
        print(f"railguard train nightly: {exc}; not started", file=sys.stderr)
        return LOCKED
    except Exception as exc:  # the state is kept: a rerun resumes at the failed stage
        log.exception("nightly stage failed")
        print(f"railguard train nightly: failed: {exc} (run it again to resume)", file=sys.stderr)
        return 1
    print(json.dumps({k: summary.get(k) for k in ("run", "outcome", "wall_s", "directory")}, indent=2))
    return 0


def label_main(argv: list[str]) -> int:
    """`railguard label [--settings railguard.yaml] [--label-limit N --teacher-url URL ...]`: the intake and
    label stages alone (the nightly job's settings), under the same lock."""
    from gateway.settings import Settings
    from trainer.config import ConfigError, load_config, parse_overrides

    if argv and argv[0] in ("-h", "--help"):
        print(label_main.__doc__)
        return 0
    try:
        config_file = None
        if len(argv) >= 2 and argv[0] == "--config":
            config_file, argv = Path(argv[1]), argv[2:]
        config = load_config(NightlyConfig, config_file, parse_overrides(argv))
        settings = Settings.load(config.settings)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"railguard label: {exc}", file=sys.stderr)
        return 2
    try:
        result = Nightly(config, settings).label_only()
    except Locked as exc:
        print(f"railguard label: {exc}; not started", file=sys.stderr)
        return LOCKED
    print(json.dumps(result, indent=2, default=str))
    return 0
