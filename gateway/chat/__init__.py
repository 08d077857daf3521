"""`POST /v1/chat/completions`: `router` (HTTP) -> `serving` (the guards, the backend, the stream guard)
-> `answers` (what railguard writes itself) and `recording` (the request's one decision record)."""

from gateway.chat.recording import Recorder, RequestContext
from gateway.chat.serving import ChatResult, ChatService

__all__ = ["ChatResult", "ChatService", "Recorder", "RequestContext"]
