"""Property tests of the policy loader: whatever a policy file holds (any text, any YAML, the default
policy with any value anywhere replaced), `load_policy` gives a `Policy` or a `PolicyError` that says
what is wrong, never another exception (which `railguard serve` would print as a traceback)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.policy import Policy, PolicyError, load_policy
from gateway.policy.model import default_policy_path

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEFAULT: dict[str, Any] = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
KEYS = [*DEFAULT, "text", "action", "threshold", "patterns", "keywords", "stages", "grey", "steer", "id"]
# Text a policy might hold, including regular expressions that do not compile (or overflow).
WORDS = st.sampled_from(["refuse", "allow", "redact", "steer", "escalate", "input", "output", "general",
                         "a{99999999999}", "(?P<1>x)", "(" * 300, "[", "\\N{nope}", "en", "0.5"])  # fmt: skip
SCALAR = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | WORDS
VALUE = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def policy_file() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp) / "policy.yaml"


def _loads_or_says_why(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    try:
        assert isinstance(load_policy(path), Policy)
    except PolicyError as exc:
        assert str(path) in str(exc)


@SETTINGS
@given(text=st.text(st.characters(exclude_categories=["Cs"]), max_size=200))
def test_any_text(policy_file: Path, text: str) -> None:
    _loads_or_says_why(policy_file, text)


@SETTINGS
@given(value=VALUE)
def test_any_yaml(policy_file: Path, value: Any) -> None:
    _loads_or_says_why(policy_file, yaml.safe_dump(value, allow_unicode=True))


def _paths(node: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*at, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _paths(child, (*at, i))


PATHS = [p for p in _paths(DEFAULT) if p]


@SETTINGS
@given(changes=st.lists(st.tuples(st.sampled_from(PATHS), VALUE), min_size=1, max_size=3))
def test_the_default_policy_with_any_value_anywhere_replaced(
    policy_file: Path, changes: list[tuple[tuple[Any, ...], Any]]
) -> None:
    policy = yaml.safe_load(yaml.safe_dump(DEFAULT))
    for path, value in changes:
        node = policy
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):  # an earlier change removed the way there
            continue
    _loads_or_says_why(policy_file, yaml.safe_dump(policy, allow_unicode=True))


@pytest.mark.parametrize(
    "text",
    [
        "version: v\nreleased: 2001-13-01\n",  # PyYAML: ValueError (month must be in 1..12)
        "version: !!float zz\n",  # ValueError
        "version: !!timestamp junk\n",  # AttributeError inside PyYAML
        "[" * 5000 + "]" * 5000,  # RecursionError inside PyYAML
        "version: v\nprinciples: {general: {text: x}}\nrules: [{id: r, patterns: ['a{99999999999}']}]\n",
        "version: v\nprinciples: {general: {text: x}}\nrules: [{id: r, patterns: ['" + "(" * 2000 + "']}]\n",
    ],
)
def test_inputs_that_escaped_as_other_exceptions_before(policy_file: Path, text: str) -> None:
    policy_file.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError):
        load_policy(policy_file)
