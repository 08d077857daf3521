"""Gateway overhead: the same requests straight to a stub upstream and through railguard.

One run starts a stub upstream (`gateway.testing.stub_upstream`) and four gateways in front of it, each a
subprocess on a free 127.0.0.1 port: the rule guard alone (input and output, the default policy) with
metrics on and with `metrics: false`, and the full guard (rules and every classifier, input and output),
once with the upstream called after the input guard and once while it runs (`input_guard: during_call`),
and the rule guard with every decision record written to a Redis Stream (a real `redis-server` the run
starts, append-only file, fsync every second): the request path must not wait on Redis.
`--upstream-delay-ms` makes the stub wait that long before answering, as a model's prefill does: the
input guard's latency hides behind it only in the second.
It then measures:

* sequential: latency p50/p99 direct and through, and the added p50/p99 (through - direct);
* streaming sequential: time to the first content token, direct and through, added TTFT p50/p99;
* concurrency (32 connections): throughput each way, the ratio, latency p50/p99 under load;
* metrics on vs off: the added latency and gateway CPU per request of the telemetry;
* the full guard: added latency sequentially and added TTFT streaming, before and during the call;
* the Redis sink: added latency and throughput with every request's record sent to the stream.

Sequential requests are interleaved (direct, through, through-without-metrics, direct, ...) so that noise
from other work on the machine hits every target alike; every measurement is repeated `--rounds` times and
reported as the median with the min-max over rounds. The load generator is a lean keep-alive HTTP/1.1
client (`bench/httpload.py`: asyncio + uvloop + httptools, ~20 us of CPU per request) rather than httpx
(~250 us per request): on a 2-core machine the client must not compete with what it measures; the
services are started by `bench/processes.py`. Processes are pinned: the gateways
on CPU 0, the stub and the client on CPU 1 (`--no-pin` to let the scheduler decide). Every phase also
reads /proc to report CPU used by processes that are not part of the benchmark (a quietness check).

    .venv/bin/python bench/overhead.py [--quick] [--json FILE] [--rounds 3] [--requests 2000]
        [--encoder e5-small] [--precision fp32|int8] [--fuse gemma-probe] [--no-early-exit]
        [--exit-blocks 6]
                                                              # the full guard's classifiers
        [--upstream-delay-ms 40]   # the stub's time to first token
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from httpload import Connection, HttpxConnection, Opener, chat_request_bytes, summary_ms
from processes import (
    CLASSIFIER_CACHE,
    HELPER_CPU,
    CpuMonitor,
    Processes,
    can_pin,
    free_port,
    stream_length,
    wait_quiet,
)

MODEL = "stub-model"
PROMPT = "Hello there! Please answer briefly, say: The capital of France is Paris. It is lovely."
REPLY = "The capital of France is Paris. It is lovely."

# -- the services ----------------------------------------------------------------------------------


@dataclass
class Services:
    stub: int
    gateway: int
    gateway_nometrics: int
    gateway_full: int
    gateway_during: int
    gateway_redis: int
    redis: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}


@contextlib.contextmanager
def services(
    pin: bool, workdir: Path, full_options: str = "", upstream_delay_ms: float = 0.0
) -> Iterator[Services]:
    svc = Services(*(free_port() for _ in range(7)))
    full = f"classifiers: {{options: {{cache_dir: '{CLASSIFIER_CACHE}'{full_options}}}}}\n"
    gateways = {
        # the rule guard alone (the gateway-core targets), with and without metrics
        "gateway": (svc.gateway, "metrics: true\nclassifiers: {enabled: false}\n"),
        "gateway_nometrics": (svc.gateway_nometrics, "metrics: false\nclassifiers: {enabled: false}\n"),
        # the full guard: rules and every classifier, on input and output (the classifier targets)
        "gateway_full": (svc.gateway_full, "metrics: true\n" + full),
        # the same, the upstream called while the input guard runs
        "gateway_during": (svc.gateway_during, "metrics: true\ninput_guard: during_call\n" + full),
        # the rule guard, every request's decision record to the Redis Stream
        "gateway_redis": (
            svc.gateway_redis,
            "metrics: true\nclassifiers: {enabled: false}\n"
            f"redis_url: redis://127.0.0.1:{svc.redis}/0\nsink: {{kind: redis, record: all}}\n",
        ),
    }
    with Processes(workdir, pin) as procs:
        svc.procs = procs.procs
        procs.stub("stub", svc.stub, upstream_delay_ms)
        procs.redis("redis", svc.redis)
        for name, (port, settings) in gateways.items():
            procs.gateway(name, port, svc.stub, settings)
        for name, (port, _) in gateways.items():
            procs.wait_gateway(name, port)
        yield svc


def request_bytes(port: int, stream: bool) -> bytes:
    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 32}
    return chat_request_bytes(port, {**body, "stream": stream})


def check_response(target: str, status: int, body: bytes, stream: bool) -> None:
    if status != 200:
        raise RuntimeError(f"{target}: HTTP {status}: {body[:300]!r}")
    if stream:
        events = [orjson.loads(e[6:]) for e in body.split(b"\n\n") if e.startswith(b"data: {")]
        text = "".join((c.get("delta") or {}).get("content") or "" for e in events for c in e["choices"])
        action = next((c["railguard"]["action"] for c in events if "railguard" in c), "allow")
    else:
        data = orjson.loads(body)
        text = data["choices"][0]["message"]["content"]
        action = data.get("railguard", {}).get("action", "allow")
    if text != REPLY or action != "allow":
        raise RuntimeError(f"{target}: unexpected answer {text!r} (action {action})")


# -- measurements ----------------------------------------------------------------------------------


async def sequential(
    opener: Opener,
    ports: dict[str, int],
    n: int,
    warmup: int,
    stream: bool,
    monitor: CpuMonitor,
) -> dict[str, Any]:
    """n requests per target, interleaved target by target; latency (and TTFT when streaming)."""
    conns = {t: await opener(p) for t, p in ports.items()}
    payloads = {t: request_bytes(p, stream) for t, p in ports.items()}
    for target in ports:  # one checked request each, then warm-up
        _, _, status, body = await conns[target].request(payloads[target], stream)
        check_response(target, status, body, stream)
    for _ in range(warmup):
        for target in ports:
            await conns[target].request(payloads[target], stream)
    latency: dict[str, list[float]] = {t: [] for t in ports}
    ttft: dict[str, list[float]] = {t: [] for t in ports}
    order = list(ports)
    start = monitor.snapshot()
    for i in range(n):
        turn = i % len(order)
        for target in order[turn:] + order[:turn]:  # rotate, so no target always goes first
            elapsed, first, status, body = await conns[target].request(payloads[target], stream)
            if status != 200:
                raise RuntimeError(f"{target}: HTTP {status}: {body[:300]!r}")
            latency[target].append(elapsed)
            if stream:
                if first is None:
                    raise RuntimeError(f"{target}: a stream without content")
                ttft[target].append(first)
    cpu = CpuMonitor.usage(start, monitor.snapshot())
    for conn in conns.values():
        conn.close()
    out: dict[str, Any] = {t: {"latency_ms": summary_ms(latency[t])} for t in ports}
    for t in ports:
        if stream:
            out[t]["ttft_ms"] = summary_ms(ttft[t])
    out["cpu"] = cpu
    return out


async def load(
    opener: Opener,
    target: str,
    port: int,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    monitor: CpuMonitor,
) -> dict[str, Any]:
    """`concurrency` connections, each sending back to back; throughput and latency in a window."""
    payload = request_bytes(port, False)
    conns = [await opener(port) for _ in range(concurrency)]
    _, _, status, body = await conns[0].request(payload, False)
    check_response(target, status, body, False)
    loop = asyncio.get_running_loop()
    begin = loop.time() + warmup_s
    end = begin + duration_s
    latencies: list[float] = []
    errors = 0

    async def worker(conn: Any) -> None:
        nonlocal errors
        while (now := loop.time()) < end:
            elapsed, _, status, _ = await conn.request(payload, False)
            if status != 200:
                errors += 1
            elif now >= begin and now + elapsed <= end:
                latencies.append(elapsed)

    async def window() -> dict[str, float]:
        await asyncio.sleep(max(0.0, begin - loop.time()))
        start = monitor.snapshot()
        await asyncio.sleep(max(0.0, end - loop.time()))
        return CpuMonitor.usage(start, monitor.snapshot())

    cpu, *_ = await asyncio.gather(window(), *(worker(c) for c in conns))
    for conn in conns:
        conn.close()
    if errors:
        raise RuntimeError(f"{target}: {errors} failed requests under load")
    return {
        "rps": len(latencies) / duration_s,
        "latency_ms": summary_ms(latencies),
        "cpu": cpu,
    }


# -- a run -----------------------------------------------------------------------------------------


async def one_round(
    opener: Opener, svc: Services, args: argparse.Namespace, monitor: CpuMonitor
) -> dict[str, Any]:
    ports = {
        "direct": svc.stub,
        "through": svc.gateway,
        "nometrics": svc.gateway_nometrics,
        "full": svc.gateway_full,
        "during": svc.gateway_during,
        "redis": svc.gateway_redis,
    }
    seq = await sequential(opener, ports, args.requests, args.warmup, False, monitor)
    stream = await sequential(opener, ports, args.stream_requests, args.warmup // 4, True, monitor)
    conc = {}
    for target in ("direct", "through", "nometrics", "redis"):
        conc[target] = await load(
            opener, target, ports[target], args.concurrency, args.load_warmup_s,
            args.load_s, monitor,
        )  # fmt: skip
    return {"sequential": seq, "streaming": stream, "concurrency": conc}


def derive(raw: dict[str, Any], n: int, stream_n: int) -> dict[str, float]:
    """The figures of one round."""
    seq, stream, conc = raw["sequential"], raw["streaming"], raw["concurrency"]
    d, t, o, f = (seq[k]["latency_ms"] for k in ("direct", "through", "nometrics", "full"))
    sd, st, sf, sg = (stream[k]["ttft_ms"] for k in ("direct", "through", "full", "during"))
    g = seq["during"]["latency_ms"]
    r = seq["redis"]["latency_ms"]
    sl = stream["through"]["latency_ms"]
    seq_wall = seq["cpu"]["wall_s"]
    return {
        "seq_direct_p50": d["p50"],
        "seq_direct_p99": d["p99"],
        "seq_through_p50": t["p50"],
        "seq_through_p99": t["p99"],
        "seq_added_p50": t["p50"] - d["p50"],
        "seq_added_p99": t["p99"] - d["p99"],
        "seq_added_mean": t["mean"] - d["mean"],
        "ttft_direct_p50": sd["p50"],
        "ttft_direct_p99": sd["p99"],
        "ttft_through_p50": st["p50"],
        "ttft_through_p99": st["p99"],
        "ttft_added_p50": st["p50"] - sd["p50"],
        "ttft_added_p99": st["p99"] - sd["p99"],
        "stream_through_total_p50": sl["p50"],
        "seq_full_p50": f["p50"],
        "seq_full_p99": f["p99"],
        "seq_full_added_p50": f["p50"] - d["p50"],
        "seq_full_added_p99": f["p99"] - d["p99"],
        "ttft_full_p50": sf["p50"],
        "ttft_full_added_p50": sf["p50"] - sd["p50"],
        "gw_full_cpu_us": seq["cpu"]["gateway_full"] * seq_wall / n * 1e6,
        "seq_during_p50": g["p50"],
        "seq_during_p99": g["p99"],
        "seq_during_added_p50": g["p50"] - d["p50"],
        "seq_during_added_p99": g["p99"] - d["p99"],
        "ttft_during_p50": sg["p50"],
        "ttft_during_added_p50": sg["p50"] - sd["p50"],
        "seq_redis_p50": r["p50"],
        "seq_redis_p99": r["p99"],
        "seq_redis_added_p50": r["p50"] - d["p50"],
        "seq_redis_added_p99": r["p99"] - d["p99"],
        "sink_redis_added_p50": r["p50"] - t["p50"],
        "c_redis_rps": conc["redis"]["rps"],
        "c_direct_rps": conc["direct"]["rps"],
        "c_through_rps": conc["through"]["rps"],
        "c_ratio": conc["through"]["rps"] / conc["direct"]["rps"],
        "c_direct_p50": conc["direct"]["latency_ms"]["p50"],
        "c_direct_p99": conc["direct"]["latency_ms"]["p99"],
        "c_through_p50": conc["through"]["latency_ms"]["p50"],
        "c_through_p99": conc["through"]["latency_ms"]["p99"],
        "c_nometrics_rps": conc["nometrics"]["rps"],
        "metrics_added_p50": t["p50"] - o["p50"],
        "metrics_added_mean": t["mean"] - o["mean"],
        # gateway CPU per request, sequential phase (each gateway serves only its own target)
        "gw_cpu_us": seq["cpu"]["gateway"] * seq_wall / n * 1e6,
        "gw_nometrics_cpu_us": seq["cpu"]["gateway_nometrics"] * seq_wall / n * 1e6,
        "metrics_cpu_us": (seq["cpu"]["gateway"] - seq["cpu"]["gateway_nometrics"]) * seq_wall / n * 1e6,
        "gw_stream_cpu_us": stream["cpu"]["gateway"] * stream["cpu"]["wall_s"] / stream_n * 1e6,
        "c_gw_cores": conc["through"]["cpu"]["gateway"],
        "c_gw_cpu_us": conc["through"]["cpu"]["gateway"] / conc["through"]["rps"] * 1e6,
        "c_capacity_rps": conc["through"]["rps"] / max(conc["through"]["cpu"]["gateway"], 1e-9),
        "c_client_cores": conc["through"]["cpu"]["client"],
        "c_client_cpu_us": conc["direct"]["cpu"]["client"] / conc["direct"]["rps"] * 1e6,
        "foreign_cores_max": max(
            seq["cpu"]["foreign"],
            stream["cpu"]["foreign"],
            *(c["cpu"]["foreign"] for c in conc.values()),
        ),
    }


ROWS: list[tuple[str, str, str, str, str]] = [
    # label, direct key, through key, added key, target
    ("Sequential latency p50 (ms)", "seq_direct_p50", "seq_through_p50", "seq_added_p50", "≤ 3"),
    ("Sequential latency p99 (ms)", "seq_direct_p99", "seq_through_p99", "seq_added_p99", "≤ 8"),
    ("Streaming TTFT p50 (ms)", "ttft_direct_p50", "ttft_through_p50", "ttft_added_p50", "≤ 3"),
    ("Streaming TTFT p99 (ms)", "ttft_direct_p99", "ttft_through_p99", "ttft_added_p99", ""),
    ("c=32 throughput (req/s)", "c_direct_rps", "c_through_rps", "c_ratio", "≥ 250"),
    ("c=32 latency p50 (ms)", "c_direct_p50", "c_through_p50", "", ""),
    ("c=32 latency p99 (ms)", "c_direct_p99", "c_through_p99", "", ""),
    (
        "Full guard (rules + classifiers, in and out): sequential p50 (ms)",
        "seq_direct_p50",
        "seq_full_p50",
        "seq_full_added_p50",
        "≤ 8",
    ),
    ("Full guard: sequential p99 (ms)", "seq_direct_p99", "seq_full_p99", "seq_full_added_p99", "≤ 20"),
    ("Full guard: streaming TTFT p50 (ms)", "ttft_direct_p50", "ttft_full_p50", "ttft_full_added_p50", ""),
    (
        "Full guard, upstream called during the input guard: sequential p50 (ms)",
        "seq_direct_p50",
        "seq_during_p50",
        "seq_during_added_p50",
        "",
    ),
    ("… during: sequential p99 (ms)", "seq_direct_p99", "seq_during_p99", "seq_during_added_p99", ""),
    ("… during: streaming TTFT p50 (ms)", "ttft_direct_p50", "ttft_during_p50", "ttft_during_added_p50", ""),
    (
        "Rule guard, every record to the Redis Stream: sequential p50 (ms)",
        "seq_direct_p50",
        "seq_redis_p50",
        "seq_redis_added_p50",
        "",
    ),
    ("… Redis sink: sequential p99 (ms)", "seq_direct_p99", "seq_redis_p99", "seq_redis_added_p99", ""),
    ("… Redis sink: c=32 throughput (req/s)", "c_direct_rps", "c_redis_rps", "", ""),
]
METRIC_ROWS: list[tuple[str, str, str]] = [
    ("Metrics on − off, sequential p50 (ms)", "metrics_added_p50", "< 0.5"),
    ("Metrics on − off, sequential mean (ms)", "metrics_added_mean", "< 0.5"),
    ("Metrics on − off, gateway CPU per request (µs)", "metrics_cpu_us", ""),
    ("Gateway CPU per request, metrics on (µs)", "gw_cpu_us", ""),
    ("Gateway CPU per request, metrics off (µs)", "gw_nometrics_cpu_us", ""),
    ("Gateway CPU per request, full guard (µs)", "gw_full_cpu_us", ""),
    ("Gateway CPU per streamed request (µs)", "gw_stream_cpu_us", ""),
    ("c=32 throughput, metrics off (req/s)", "c_nometrics_rps", ""),
    ("Redis sink on − off (every record sent), sequential p50 (ms)", "sink_redis_added_p50", "< 0.5"),
    ("c=32 gateway CPU (cores; 1.00 = its core to itself)", "c_gw_cores", ""),
    ("c=32 gateway CPU per request (µs)", "c_gw_cpu_us", ""),
    ("c=32 throughput per gateway core: req/s ÷ cores used", "c_capacity_rps", "≥ 250"),
    ("c=32 client CPU, through phase (cores)", "c_client_cores", "≪ 1"),
    ("c=32 client CPU per request, direct phase (µs)", "c_client_cpu_us", ""),
    ("CPU used by other processes, worst phase (cores)", "foreign_cores_max", "quiet: < 0.10"),
]


def aggregate(rounds: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        key: {
            "median": statistics.median(r[key] for r in rounds),
            "min": min(r[key] for r in rounds),
            "max": max(r[key] for r in rounds),
        }
        for key in rounds[0]
    }


def fmt(stats: dict[str, float], digits: int, single: bool) -> str:
    if single:
        return f"{stats['median']:.{digits}f}"
    return f"{stats['median']:.{digits}f} ({stats['min']:.{digits}f}–{stats['max']:.{digits}f})"


def table(figures: dict[str, dict[str, float]], rounds: int) -> str:
    single = rounds == 1
    digits = {"rps": 0, "ratio": 2}

    def cell(key: str) -> str:
        if not key:
            return ""
        places = next((v for k, v in digits.items() if key.endswith(k)), 2)
        return fmt(figures[key], places, single)

    spread = "" if single else f"; median (min–max) of {rounds} rounds"
    lines = [
        f"| Measure{spread} | Direct to stub | Through railguard | Added (through − direct) | Target |",
        "|---|---|---|---|---|",
    ]
    for label, d, t, added, target in ROWS:
        added_cell = cell(added) + (" (ratio)" if added == "c_ratio" else "")
        lines.append(f"| {label} | {cell(d)} | {cell(t)} | {added_cell} | {target} |")
    lines += ["", f"| Telemetry and CPU{spread} | Value | Target |", "|---|---|---|"]
    for label, key, target in METRIC_ROWS:
        places = 1 if key.endswith("_us") else 0 if key.endswith("_rps") else 2
        lines.append(f"| {label} | {fmt(figures[key], places, single)} | {target} |")
    return "\n".join(lines)


async def run(args: argparse.Namespace, svc: Services) -> dict[str, Any]:
    if args.client == "httpx":
        opener: Opener = HttpxConnection.open
    else:
        opener = Connection.open
    monitor = CpuMonitor(svc.pids())
    rounds, raws = [], []
    for i in range(args.rounds):
        foreign = await wait_quiet(monitor, 0.1, args.wait_quiet_s)
        print(f"round {i + 1}/{args.rounds} (others used {foreign:.2f} cores before)", file=sys.stderr)
        raw = await one_round(opener, svc, args, monitor)
        raw["foreign_before"] = foreign
        raws.append(raw)
        rounds.append(derive(raw, args.requests, args.stream_requests))
        brief = ("seq_added_p50", "seq_added_p99", "ttft_added_p50", "c_through_rps",
                 "c_capacity_rps", "gw_cpu_us", "metrics_cpu_us", "foreign_cores_max")  # fmt: skip
        print("  " + ", ".join(f"{k}={rounds[-1][k]:.2f}" for k in brief), file=sys.stderr)
    return {"rounds": rounds, "raw": raws}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="sequential, per target")
    parser.add_argument("--stream-requests", type=int, default=500, help="streaming, per target")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests per target")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--load-s", type=float, default=5.0, help="measured seconds under load")
    parser.add_argument("--load-warmup-s", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin CPUs")
    parser.add_argument("--wait-quiet-s", type=float, default=30.0,
                        help="before each round, wait up to this long for a quiet machine")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--encoder", help="the full guard's classifier encoder (default: the gateway's)")
    parser.add_argument("--precision", choices=("fp32", "int8"), help="the full guard's ONNX precision")
    parser.add_argument("--fuse", help="the full guard's second encoder (e.g. gemma-probe; default: none)")
    parser.add_argument(
        "--no-early-exit",
        action="store_true",
        help="the full guard's e5-small runs all 12 blocks on every text",
    )
    parser.add_argument(
        "--exit-blocks",
        metavar="N[,N]",
        help="the blocks the full guard's early exits read (default: the encoder's, e5-small 3,6)",
    )
    parser.add_argument(
        "--upstream-delay-ms", type=float, default=0.0, help="the stub's wait before answering (a prefill)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.stream_requests, args.warmup = 100, 30, 20
        args.load_s, args.load_warmup_s, args.rounds, args.wait_quiet_s = 1.0, 0.3, 1, 0.0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up on `kill`
    pin = args.pin and can_pin()
    chosen = {
        "encoder": args.encoder,
        "precision": args.precision,
        "fuse": f"{{encoder: {args.fuse}}}" if args.fuse else None,
        "early_exit": "false" if args.no_early_exit else None,
        "exit_blocks": f"[{args.exit_blocks}]" if args.exit_blocks else None,
    }
    full_options = "".join(f", {key}: {value}" for key, value in chosen.items() if value)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with (
        tempfile.TemporaryDirectory(prefix="railguard-bench-") as tmp,
        services(pin, Path(tmp), full_options, args.upstream_delay_ms) as svc,
    ):
        if pin:
            os.sched_setaffinity(0, {HELPER_CPU})
        result = asyncio.run(run(args, svc))
        result["redis_records"] = stream_length(svc.redis)
    figures = aggregate(result["rounds"])
    print(table(figures, args.rounds))
    print(f"\nfull guard classifiers: {full_options.lstrip(', ') or 'the gateway defaults'}")
    print(f"records the Redis-sink gateway delivered to the stream: {result['redis_records']}")
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "pinned": pin,
        "client": args.client,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    if args.json:
        payload = {"meta": meta, "figures": figures, **result}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
