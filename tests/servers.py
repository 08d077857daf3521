"""Real processes for integration tests: the stub upstream and `railguard serve`, on free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
RAILGUARD = [sys.executable, "-m", "gateway.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    url: str,
    *,
    status: int = 200,
    timeout: float = 60.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code == status:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {status} within {timeout}s")


@contextmanager
def running(
    cmd: list[str],
    ready_url: str,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    log: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        wait_for(ready_url, timeout=timeout, proc=proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


@contextmanager
def stub_upstream(token_delay_ms: float = 0.0) -> Iterator[str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "gateway.testing.stub_upstream",
        "--port",
        str(port),
        "--token-delay-ms",
        str(token_delay_ms),
    ]
    with running(cmd, f"http://127.0.0.1:{port}/v1/models"):
        yield f"http://127.0.0.1:{port}/v1"


@contextmanager
def gateway(
    config: Path | None,
    *,
    cache_dir: Path,
    timeout: float = 60.0,
    extra: list[str] | None = None,
    ready: str = "/readyz",
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """`railguard serve` on a free port; with `config=None`, the embedded default as a newcomer runs it."""
    port = free_port()
    cmd = [*RAILGUARD, "serve", "--port", str(port), *(extra or [])]
    if config is not None:
        cmd += ["--config", str(config)]
    env = {"RAILGUARD_CACHE_DIR": str(cache_dir), **(env or {})}
    with running(
        cmd,
        f"http://127.0.0.1:{port}{ready}",
        env=env,
        timeout=timeout,
        log=cache_dir / f"gateway-{port}.log",
    ):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def redis_server(data_dir: Path, port: int | None = None) -> Iterator[str]:
    """A real `redis-server` (Debian's package) on a free port, persisting to ``data_dir`` (append-only
    file, fsync always) so that a restart on the same port and directory keeps the stream."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
           "--appendonly", "yes", "--appendfsync", "always", "--save", ""]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
