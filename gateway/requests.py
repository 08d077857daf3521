"""Reading a request body: size limit, JSON, UTF-8, and validation into protocol models.

Every failure is an `InvalidRequestError` (or 413) that names the parameter, in OpenAI's words where
OpenAI has words for it.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request

from gateway.errors import InvalidRequestError, PayloadTooLargeError
from gateway.protocol import ChatCompletionRequest
from gateway.settings import LimitsConfig

# OpenAI's roles whose messages must carry content (an assistant's may hold only tool calls)
CONTENT_REQUIRED = frozenset({"system", "developer", "user", "tool"})


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"The request body is larger than the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"The request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequestError(
                "The request body is not valid UTF-8.", code="invalid_encoding"
            ) from None
        raise InvalidRequestError(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
            f"sending valid JSON.) Parser: {exc}",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.", code="invalid_json")
    return data


def _param(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not out:
            out = part
        elif not part.startswith(("function-", "str", "list[", "int", "float", "bool", "dict[")):
            out += f".{part}"
    return out


def validation_error(exc: ValidationError) -> InvalidRequestError:
    first = exc.errors(include_url=False)[0]
    param = _param(tuple(first["loc"]))
    if first["type"] == "missing":
        return InvalidRequestError(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    message = first["msg"].removeprefix("Value error, ")
    return InvalidRequestError(f"Invalid value for '{param}': {message}.", param=param, code="invalid_value")


def parse_chat_request(data: dict[str, Any], limits: LimitsConfig) -> ChatCompletionRequest:
    try:
        request = ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
    if len(request.messages) > limits.max_messages:
        raise InvalidRequestError(
            f"Too many messages: {len(request.messages)} > {limits.max_messages}.",
            param="messages",
            code="array_above_max_length",
        )
    if request.stream_options is not None and not request.stream:
        raise InvalidRequestError(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    for i, message in enumerate(request.messages):
        if message.content is None and message.role in CONTENT_REQUIRED:
            param = f"messages[{i}].content"
            if "content" not in message.model_fields_set:
                raise InvalidRequestError(
                    f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
                )
            raise InvalidRequestError(
                f"Invalid type for '{param}': expected a string or an array of content parts, but got "
                "null instead.",
                param=param,
                code="invalid_type",
            )
        if len(message.text()) > limits.max_message_chars:
            raise InvalidRequestError(
                f"Message {i} is longer than the limit of {limits.max_message_chars} characters.",
                param=f"messages[{i}].content",
                code="string_above_max_length",
            )
    return request
