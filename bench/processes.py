"""The benchmarks' processes: a stub upstream, `railguard serve` gateways and a redis-server, each a
subprocess on a free 127.0.0.1 port, pinned to a CPU and killed if the benchmark dies; and the CPU
they (and everyone else on the machine) use, read from /proc.

`bench/overhead.py` and `bench/soak.py` share it: both start their services with `Processes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GATEWAY_CPU, HELPER_CPU = 0, 1
CLASSIFIER_CACHE = Path.home() / ".cache" / "railguard" / "classifiers"  # built once, shared by runs
STREAM = "{railguard}:records"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2


# -- CPU and memory accounting ---------------------------------------------------------------------


def task_cpu_s(pid: int) -> float:
    """On-CPU seconds of every thread of `pid`, from schedstat (ns resolution)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def system_busy_s() -> float:
    """CPU seconds spent busy on the whole machine since boot (all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and of its child processes, if it has any (VmRSS, from /proc)."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) * 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):
                    total += rss_bytes(int(child))
    return total


@dataclass
class CpuSnapshot:
    wall: float
    busy: float
    ours: dict[str, float]


class CpuMonitor:
    """CPU used by each benchmark process, and by everything else on the machine, over a phase."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, "client": os.getpid()}

    def snapshot(self) -> CpuSnapshot:
        ours = {name: task_cpu_s(pid) for name, pid in self.pids.items()}
        return CpuSnapshot(time.perf_counter(), system_busy_s(), ours)

    @staticmethod
    def usage(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, float]:
        """Cores used (CPU seconds per wall second) by each process, and `foreign`: everyone else."""
        wall = max(end.wall - start.wall, 1e-9)
        out = {name: (end.ours[name] - start.ours[name]) / wall for name in start.ours}
        busy = (end.busy - start.busy) / wall
        out["foreign"] = max(0.0, busy - sum(out.values()))
        out["wall_s"] = wall
        return out


async def quiet_check(monitor: CpuMonitor, seconds: float = 1.0) -> float:
    start = monitor.snapshot()
    await asyncio.sleep(seconds)
    return CpuMonitor.usage(start, monitor.snapshot())["foreign"]


async def wait_quiet(monitor: CpuMonitor, limit: float, wait_s: float) -> float:
    """Wait (up to wait_s) until other processes use at most `limit` cores; return what was seen."""
    deadline = time.monotonic() + wait_s
    for seen in range(sys.maxsize):
        foreign = await quiet_check(monitor)
        if foreign <= limit or time.monotonic() >= deadline:
            break
        if seen % 10 == 0:
            print(f"  (machine busy: {foreign:.2f} cores used by others; waiting)", file=sys.stderr)
    return foreign


# -- processes -------------------------------------------------------------------------------------


def child_setup(cpu: int | None) -> Callable[[], None]:
    """In the child: pin it to `cpu` (when given), and have it killed if the benchmark dies."""

    def setup() -> None:
        if cpu is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {cpu})
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return setup


class Processes:
    """The services of one run, each logging to `<workdir>/<name>.log`; all terminated on exit."""

    def __init__(self, workdir: Path, pin: bool) -> None:
        self.workdir = workdir
        self.pin = pin
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop(*self.procs)
        for log in self._logs:
            log.close()

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def start(
        self, name: str, cmd: list[str], cpu: int | None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.log(name), "wb")  # noqa: SIM115
        self._logs.append(log)
        self.procs[name] = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=child_setup(cpu if self.pin else None),
        )
        return self.procs[name]

    def stub(self, name: str, port: int, first_token_delay_ms: float = 0.0) -> None:
        """The stub upstream standing for a remote vLLM (`gateway.testing.stub_upstream`), ready."""
        cmd = [sys.executable, "-m", "gateway.testing.stub_upstream", "--port", str(port),
               "--first-token-delay-ms", str(first_token_delay_ms)]  # fmt: skip
        wait_ready(port, "/v1/models", self.start(name, cmd, HELPER_CPU), self.log(name))

    def redis(self, name: str, port: int) -> None:
        wait_redis(port, self.start(name, redis_command(port, self.workdir), HELPER_CPU), self.log(name))

    def gateway(self, name: str, port: int, upstream_port: int, settings: str) -> None:
        """`railguard serve` in upstream mode with `settings` (YAML), its cache under the workdir;
        started, not waited for: `wait_gateway` (gateways start in parallel)."""
        cache = self.workdir / name
        cache.mkdir()
        config = self.workdir / f"{name}.yaml"
        # Defaults otherwise: log_level info (one JSON access-log line per request, to the log file).
        config.write_text(settings)
        upstream = f"http://127.0.0.1:{upstream_port}/v1"
        args = ["serve", "--upstream", upstream, "--port", str(port), "--config", str(config)]
        cmd = [sys.executable, "-m", "gateway.cli", *args]
        self.start(name, cmd, GATEWAY_CPU, {"RAILGUARD_CACHE_DIR": str(cache)})

    def wait_gateway(self, name: str, port: int) -> None:
        wait_ready(port, "/readyz", self.procs[name], self.log(name))

    def stop(self, *names: str) -> None:
        """SIGTERM (a gateway drains and closes its sink), then SIGKILL after 10 s."""
        for name in names:
            self.procs[name].terminate()
        for name in names:
            try:
                self.procs[name].wait(10)
            except subprocess.TimeoutExpired:
                self.procs[name].kill()
                self.procs[name].wait()


def wait_ready(port: int, path: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    # a first run on a fresh machine exports and quantizes the classifiers before /readyz answers 200
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{log.stem} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{log.stem} did not become ready:\n{log.read_text()[-3000:]}")


def redis_command(port: int, workdir: Path) -> list[str]:
    """Debian's redis-server as a production one runs: append-only file, fsync every second."""
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]  # fmt: skip


def wait_redis(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def stream_length(port: int, key: str = STREAM) -> int:
    """XLEN of the records stream: the records the Redis-sink gateway delivered."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"*2\r\n$4\r\nXLEN\r\n${len(key)}\r\n{key}\r\n".encode())
        reply = s.recv(64)
    return int(reply[1:].split(b"\r\n")[0])
