"""Reading a request body: size limit, JSON, UTF-8, and validation into protocol models.

Every failure is an `InvalidRequestError` that names the parameter, in OpenAI's words where OpenAI has
words for it (a wrong type: "Invalid type for 'stream': expected a boolean, but got a string instead."),
or a 413; a client gone mid-body is a `ClientClosedError` (499), a body too slow a 408
(`gateway.slow_clients`).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request

from gateway.backends.base import ModelCard
from gateway.errors import ClientClosedError, InvalidRequestError, PayloadTooLargeError
from gateway.protocol import CONTENT_REQUIRED, ChatCompletionRequest
from gateway.settings import LimitsConfig


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"The request body is larger than the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"The request body is larger than the limit of {limit} bytes.")
            chunks.append(chunk)
    except ClientDisconnect:  # gone mid-body: counted as a 499, not logged as the server's error
        raise ClientClosedError("The client closed the connection before sending the whole body.") from None
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


# pydantic's type errors -> what OpenAI says was expected
_EXPECTED = {
    "bool_type": "a boolean",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def _kind(value: Any) -> str:
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a decimal number"),
                       (str, "a string"), (list, "an array"), (dict, "an object")):  # fmt: skip
        if isinstance(value, kind):
            return name
    return "null" if value is None else type(value).__name__


def validation_error(exc: ValidationError) -> InvalidRequestError:
    errors = exc.errors(include_url=False)
    param = _param(tuple(errors[0]["loc"]))
    # A union fails once per member: report the member that got furthest into the value, and one whose
    # type matched (its value did not) over those whose type did not.
    same_field = [e for e in errors if _param(tuple(e["loc"])).startswith(param)]
    param = max((_param(tuple(e["loc"])) for e in same_field), key=len)
    deepest = [e for e in same_field if _param(tuple(e["loc"])) == param]
    first = next((e for e in deepest if e["type"] not in _EXPECTED), deepest[0])
    if first["type"] == "missing":
        return InvalidRequestError(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if first["type"] in _EXPECTED:
        # and name every type the parameter may have
        same = [e for e in errors if _param(tuple(e["loc"])) == param and e["type"] in _EXPECTED]
        expected = " or ".join(dict.fromkeys(_EXPECTED[e["type"]] for e in same))
        return InvalidRequestError(
            f"Invalid type for '{param}': expected {expected}, but got {_kind(first['input'])} instead.",
            param=param,
            code="invalid_type",
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


def check_token_limit(request: ChatCompletionRequest, card: ModelCard) -> None:
    """A 400 naming the limit when the completion asked for is more than the model may give, as
    OpenAI answers (its words), before any work is done for the request."""
    limit = request.token_limit
    if limit is None or card.max_tokens is None or limit <= card.max_tokens:
        return
    field = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
    raise InvalidRequestError(
        f"{field} is too large: {limit}. This model supports at most {card.max_tokens} completion tokens, "
        f"whereas you provided {limit}.",
        param=field,
        code="invalid_value",
    )
