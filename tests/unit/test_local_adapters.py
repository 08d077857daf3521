"""LoRA adapters served as extra model ids: each batch runs one adapter, the base runs without any."""

from __future__ import annotations

import asyncio
import warnings

import pytest
import torch

from gateway.backends.local import LocalBackend
from gateway.backends.local.loader import LoadedModel, _with_adapters, stop_token_ids
from gateway.backends.local.template import prompt_ids
from gateway.backends.local.testing import byte_tokenizer, make_generation, tiny_gemma
from gateway.settings import LocalModelConfig

pytestmark = pytest.mark.anyio

NO_STOP = {"logit_bias": {"1": -100, "5": -100}, "temperature": 0, "max_tokens": 8}


def save_random_lora(path, seed):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = tiny_gemma(262)
    torch.manual_seed(seed)  # after tiny_gemma, which seeds its own weights
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        get_peft_model(model, config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {"tuned-a": save_random_lora(root / "a", 1), "tuned-b": save_random_lora(root / "b", 2)}


@pytest.fixture
async def backend(adapters, tmp_path):
    config = LocalModelConfig(name="base", adapters=adapters, batch_wait_ms=20)

    def loader():
        tokenizer = byte_tokenizer()
        model = _with_adapters(tiny_gemma(len(tokenizer)), adapters)
        return LoadedModel(model, tokenizer, stop_token_ids(tokenizer), peft=True)

    backend = LocalBackend(config, tmp_path, loader=loader)
    await backend.start()
    while not await backend.ready():
        await asyncio.sleep(0.01)
    yield backend
    await backend.aclose()


async def text(backend, model):
    result = await backend.complete(make_generation("adapt", model=model, **NO_STOP))
    return result["choices"][0]["message"]["content"]


async def test_each_adapter_changes_the_output_and_the_base_stays_plain(backend):
    tokenizer = byte_tokenizer()
    ids = prompt_ids(tokenizer, [{"role": "user", "content": "adapt"}])
    plain = tiny_gemma(len(tokenizer)).generate(
        torch.tensor([ids]), max_new_tokens=8, do_sample=False, suppress_tokens=[1, 5]
    )
    expected_base = tokenizer.decode(plain[0, len(ids) :], skip_special_tokens=True)
    base, a, b = [await text(backend, m) for m in ("base", "tuned-a", "tuned-b")]
    assert base == expected_base
    assert len({base, a, b}) == 3


async def test_concurrent_requests_for_different_adapters_run_in_separate_batches(backend):
    alone = {m: await text(backend, m) for m in ("base", "tuned-a", "tuned-b")}
    sizes_before = len(backend.engine.stats.batch_sizes)
    models = ["tuned-a", "base", "tuned-b", "tuned-a", "base"]
    together = await asyncio.gather(*(text(backend, m) for m in models))
    assert together == [alone[m] for m in models]
    assert sorted(list(backend.engine.stats.batch_sizes)[sizes_before:]) == [1, 2, 2]
