"""Promotion and rollback on a running gateway: the local model swaps its adapter without a restart,
a stream in flight finishes on the old one, a corrupt promotion is refused and a pointer to a corrupt
adapter leaves the gateway serving what it served."""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from gateway.backends.local.convert import ensure_model
from gateway.settings import SHIPPED_ADAPTER, LocalModelConfig
from tests.servers import gateway
from trainer.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CACHE_DIR = Path(os.environ.get("RAILGUARD_CACHE_DIR", Path.home() / ".cache" / "railguard"))
GUARD_OFF = Path(__file__).parents[2] / "evaluation" / "policies" / "guard-off.yaml"
PROMPT = "Name three colours."


def random_adapter(model_dir: Path, out: Path) -> Path:
    """A real LoRA adapter for the model, with random B matrices: it changes the greedy answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, local_files_only=True)
    with warnings.catch_warnings():  # transformers' deprecation of a name peft still calls
        warnings.simplefilter("ignore", FutureWarning)
        peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    peft.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Registry, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("registry")
    model_dir = ensure_model(LocalModelConfig(), CACHE_DIR)  # converted once, shared with other tests
    (tmp / "models").symlink_to(model_dir.parent)
    registry = Registry(tmp / "registry")
    versions = {
        "shipped": registry.register(SHIPPED_ADAPTER, name="assistant").version,
        "random": registry.register(random_adapter(model_dir, tmp / "random"), name="assistant").version,
    }
    config = tmp / "railguard.yaml"
    config.write_text(yaml.safe_dump({"policy_file": str(GUARD_OFF), "classifiers": {"enabled": False}}))
    with gateway(config, cache_dir=tmp, timeout=600) as url:
        yield url, registry, versions


def answer(url: str) -> str:
    with openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0) as client:
        reply = client.chat.completions.create(
            model="gemma-3-270m", messages=[{"role": "user", "content": PROMPT}], temperature=0, max_tokens=16
        )
    return reply.choices[0].message.content or ""


def wait_for_answer(url: str, predicate: object, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = answer(url)
        if predicate(text) or time.monotonic() > deadline:  # type: ignore[operator]
            return text
        time.sleep(1)


def test_promote_and_rollback_without_a_restart(served: tuple[str, Registry, dict[str, str]]) -> None:
    url, registry, versions = served
    before = answer(url)
    # a long stream is in flight while the promoted adapter loads and takes over
    finished: list[str | None] = []

    def stream() -> None:
        with openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0) as client:
            chunks = list(client.chat.completions.create(
                model="gemma-3-270m", stream=True, temperature=0, max_tokens=200,
                messages=[{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
            ))  # fmt: skip
        finished.append(chunks[-1].choices[0].finish_reason if chunks[-1].choices else None)

    thread = threading.Thread(target=stream)
    thread.start()
    time.sleep(2)
    registry.promote(versions["random"], model="gemma-3-270m", actor="test", reason="hot reload")
    changed = wait_for_answer(url, lambda t: t != before)
    assert changed != before, "the promoted adapter was not served"
    thread.join(timeout=300)
    assert finished and finished[0] in ("stop", "length")  # the stream in flight was not cut
    registry.promote(
        versions["shipped"], model="gemma-3-270m", actor="test", reason="back to the shipped one"
    )
    assert wait_for_answer(url, lambda t: t == before) == before
    registry.rollback(model="gemma-3-270m", actor="test", reason="check rollback")  # to the random one
    assert wait_for_answer(url, lambda t: t == changed) == changed
    registry.promote(versions["shipped"], model="gemma-3-270m", actor="test", reason="and back")
    assert wait_for_answer(url, lambda t: t == before) == before


def test_a_pointer_to_a_corrupt_adapter_leaves_the_served_one(
    served: tuple[str, Registry, dict[str, str]],
) -> None:
    url, registry, _ = served
    before = answer(url)
    broken = registry.root / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "adapter_config.json").write_text("{}")
    (broken / "adapter_model.safetensors").write_bytes(b"\x00" * 32)
    pointer = registry.root / "serving" / "gemma-3-270m.json"
    good = pointer.read_text()
    pointer.write_text(json.dumps({"model": "gemma-3-270m", "version": "broken", "adapter": str(broken)}))
    time.sleep(4)  # the gateway polls every second
    assert answer(url) == before
    pointer.write_text(good)
