"""A small, fast OpenAI-compatible server standing in for a remote vLLM in tests and benchmarks.

It answers with the request's extra field `stub_say`, or the text after `say:` in the last user message
(or the base64-decoded text after `say64:`; else a fixed sentence), word by word when streaming, and
echoes the request it received under `stub_received` so tests can check that fields were passed on
unchanged. Models with special behaviour: `stub-hang` never answers, `stub-500` fails, `stub-400` rejects
the request, `stub-429` rate-limits it (with `Retry-After: 7`), `stub-midstream-error` fails after two
chunks, `stub-echo` repeats the last user message word for word (whatever text an attack wants printed
is in its answer: a stand-in for a model that does what it is told). `GET /stub/requests` says how many
chat completions it has been asked for, so that a test can tell that a refused prompt never reached the
model.

    python -m gateway.testing.stub_upstream --port 8001 [--token-delay-ms 5] [--first-token-delay-ms 40]

`--first-token-delay-ms` waits before answering at all, as a model's prefill does (time to first token).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MODELS = ["stub-model", "stub-echo", "stub-hang", "stub-500", "stub-400", "stub-429", "stub-midstream-error"]
DEFAULT_REPLY = "Hello from the stub upstream. It answers every request the same way."


def reply_for(body: dict[str, Any]) -> str:
    if isinstance(body.get("stub_say"), str):  # an extra request field the gateway passes on: lets a
        return str(body["stub_say"])  # test make the model say what no input guard ever read
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # text parts; any other part (or a fuzzer's odd one) is skipped
                content = " ".join(
                    p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
                )
            if body.get("model") == "stub-echo" and isinstance(content, str):
                return content
            if isinstance(content, str) and "say64:" in content:  # lets a test make the model say
                encoded = content.split("say64:", 1)[1].strip()  # what the input guard never saw
                try:
                    return base64.b64decode(encoded).decode("utf-8")
                except ValueError:  # not base64 (binascii.Error) or not UTF-8: say it as written
                    return encoded
            if isinstance(content, str) and "say:" in content:
                return content.split("say:", 1)[1].strip()
            break
    return DEFAULT_REPLY


def _words(text: str) -> list[str]:
    pieces = text.split(" ")
    return [pieces[0]] + [" " + p for p in pieces[1:]]


class StubUpstream:
    def __init__(self, token_delay_s: float = 0.0, first_token_delay_s: float = 0.0) -> None:
        self.token_delay_s = token_delay_s
        self.first_token_delay_s = first_token_delay_s
        self.chat_completions = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/v1/models":
            now = int(time.time())
            data = [{"id": m, "object": "model", "created": now, "owned_by": "stub"} for m in MODELS]
            await _send_json(send, 200, {"object": "list", "data": data})
        elif method == "POST" and path == "/v1/chat/completions":
            self.chat_completions += 1
            await self._chat(receive, send)
        elif method == "GET" and path == "/stub/requests":
            await _send_json(send, 200, {"chat_completions": self.chat_completions})
        else:
            await _send_json(send, 404, _error("not found", "not_found"))

    async def _chat(self, receive: Receive, send: Send) -> None:
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = orjson.loads(raw)
        model = body.get("model")
        if model == "stub-hang":
            await asyncio.sleep(3600)
        if model == "stub-500":
            await _send_json(send, 500, _error("the stub failed on purpose", "internal"))
            return
        if model == "stub-429":
            await _send_json(send, 429, _error("slow down", "rate_limit_exceeded"), [(b"retry-after", b"7")])
            return
        if model == "stub-400":
            await _send_json(send, 400, _error("the stub rejects this on purpose", "bad_param"))
            return
        text = reply_for(body)
        n = int(body.get("n") or 1)
        if self.first_token_delay_s:
            await asyncio.sleep(self.first_token_delay_s)
        if body.get("stream"):
            await self._stream(send, body, text, n)
            return
        words = len(_words(text))
        await _send_json(
            send,
            200,
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                    for i in range(n)
                ],
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": words * n,
                    "total_tokens": 10 + words * n,
                },
                "stub_received": body,
            },
        )

    async def _stream(self, send: Send, body: dict[str, Any], text: str, n: int) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        base = {
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model"),
        }

        async def event(payload: dict[str, Any] | bytes) -> None:
            data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + data + b"\n\n",
                    "more_body": True,
                }
            )

        words = _words(text)
        for i in range(n):
            await event(
                {
                    **base,
                    "choices": [
                        {
                            "index": i,
                            "delta": {"role": "assistant", "content": ""},
                            "finish_reason": None,
                        }
                    ],
                }
            )
        for k, word in enumerate(words):
            if body.get("model") == "stub-midstream-error" and k == 2:
                await event({"error": {"message": "the stub broke mid-stream", "type": "server_error"}})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            for i in range(n):
                await event(
                    {
                        **base,
                        "choices": [{"index": i, "delta": {"content": word}, "finish_reason": None}],
                    }
                )
        for i in range(n):
            await event({**base, "choices": [{"index": i, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            await event(
                {
                    **base,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": 10,
                        "completion_tokens": len(words) * n,
                        "total_tokens": 10 + len(words) * n,
                    },
                }
            )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


async def _send_json(
    send: Send, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--token-delay-ms", type=float, default=0.0)
    parser.add_argument("--first-token-delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    app = StubUpstream(args.token_delay_ms / 1000, args.first_token_delay_ms / 1000)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
