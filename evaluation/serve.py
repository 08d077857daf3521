"""A `railguard serve` subprocess for an evaluation: started with the given settings on a free port,
waited for until ready (a local model loads in minutes on a first run), stopped afterwards."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def gateway_process(settings: dict[str, Any], log_path: Path, ready_s: float = 900) -> Iterator[str]:
    """The gateway's base URL (`http://127.0.0.1:PORT/v1`) while it runs with ``settings``."""
    import httpx

    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "railguard.yaml"
        full = {"port": port, "metrics": False, "log_level": "warning", **settings}
        config.write_text(yaml.safe_dump(full), encoding="utf-8")
        with log_path.open("wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - our own command, settings in a temporary file
                [sys.executable, "-m", "railguard", "serve", "--config", str(config)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + ready_s
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"the gateway exited with {proc.returncode}; see {log_path}")
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"the gateway was not ready within {ready_s:.0f} s; see {log_path}"
                        )
                    time.sleep(0.5)
                yield f"http://127.0.0.1:{port}/v1"
            finally:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


@contextmanager
def stub_process(log_path: Path) -> Iterator[str]:
    """The stub upstream (`gateway.testing.stub_upstream`): a model that complies with everything."""
    import httpx

    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as out:
        cmd = [sys.executable, "-m", "gateway.testing.stub_upstream", "--port", str(port)]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603 - our stub
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the stub upstream did not start; see {log_path}")
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            proc.terminate()
            proc.wait(10)
