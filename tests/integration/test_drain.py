"""SIGTERM with streams open: /readyz turns 503 at once, new requests are refused, the streams end
with an error event and [DONE] at the drain deadline, the process exits in time, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.servers import RAILGUARD, ROOT, free_port, stub_upstream, wait_for

pytestmark = pytest.mark.integration
DRAIN_S = 3.0


def test_sigterm_drains_open_streams_and_exits_in_time(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "railguard.yaml"
    with stub_upstream(token_delay_ms=50) as upstream:
        config.write_text(yaml.safe_dump({
            "upstream": {"url": upstream}, "classifiers": {"enabled": False}, "drain_s": DRAIN_S,
        }))  # fmt: skip
        log = tmp_path / "gateway.log"
        cmd = [*RAILGUARD, "serve", "--port", str(port), "--config", str(config)]
        env = {**os.environ, "RAILGUARD_CACHE_DIR": str(tmp_path)}
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(base + "/readyz", proc=proc)
            endings: list[bytes] = []
            started = threading.Barrier(6)

            def stream(words: int) -> None:
                say = "say: " + " ".join(["word"] * words)
                body = {"model": "stub-model", "stream": True, "messages": [{"role": "user", "content": say}]}
                with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=30) as reply:
                    chunks = reply.iter_bytes()
                    first = next(chunks)
                    started.wait()
                    endings.append((first + b"".join(chunks))[-400:])

            # four long streams (~10 s each) and one short one that finishes inside the drain time
            threads = [threading.Thread(target=stream, args=(n,)) for n in (200, 200, 200, 200, 10)]
            for t in threads:
                t.start()
            started.wait(timeout=20)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            ready = httpx.get(base + "/readyz", timeout=5)
            assert ready.status_code == 503 and ready.json()["status"] == "draining"
            refused = httpx.post(base + "/v1/chat/completions", json={"model": "stub-model", "messages": [
                {"role": "user", "content": "hi"}]}, timeout=5)  # fmt: skip
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "server_shutting_down"
            assert refused.headers["retry-after"] == "1"
            for t in threads:
                t.join(timeout=30)
            proc.wait(timeout=DRAIN_S + 15)
            exited = time.monotonic() - signalled
        finally:
            if proc.poll() is None:
                proc.kill()
    assert exited < DRAIN_S + 8, exited
    assert len(endings) == 5 and all(e.endswith(b"data: [DONE]\n\n") for e in endings)
    cut = [e for e in endings if b"server_shutting_down" in e]
    assert len(cut) == 4  # the long ones: error event, then [DONE]; the short one finished normally
    text = log.read_text()
    assert "Traceback" not in text and "CancelledError" not in text
