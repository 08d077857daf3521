"""`POST /v1/moderations`: `router` (HTTP) -> `serving` (railguard's classifiers), with the request and
response models in `protocol`."""

from gateway.moderations.protocol import ModerationRequest
from gateway.moderations.serving import ModerationService

__all__ = ["ModerationRequest", "ModerationService"]
