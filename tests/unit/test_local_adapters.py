"""LoRA adapters served as extra model ids: each batch runs one adapter, the base runs without any."""

from __future__ import annotations

import asyncio
import warnings

import pytest
import torch

from gateway.backends.local import LocalBackend
from gateway.backends.local.loader import LoadedModel, _with_adapters, load_model, stop_token_ids
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


@pytest.fixture
async def merged_backend(adapters, tmp_path):
    """A saved model whose `name` serves adapter a merged into its weights, the untuned weights under
    their own id, and adapter b as an extra id: loaded by the real loader, as `railguard serve` does."""
    tokenizer = byte_tokenizer()
    tiny_gemma(len(tokenizer)).save_pretrained(str(tmp_path / "model"))
    tokenizer.save_pretrained(str(tmp_path / "model"))
    config = LocalModelConfig(
        name="assistant",
        path=tmp_path / "model",
        dtype="float32",
        adapter=adapters["tuned-a"],
        base_name="plain",
        adapters={"tuned-b": adapters["tuned-b"]},
        batch_wait_ms=20,
    )
    backend = LocalBackend(config, tmp_path, loader=lambda: load_model(tmp_path / "model", config))
    await backend.start()
    while not await backend.ready():
        await asyncio.sleep(0.01)
    yield backend
    await backend.aclose()


async def test_the_served_name_runs_its_adapter_merged_and_the_base_keeps_its_own_id(
    merged_backend, tmp_path
):
    from peft import PeftModel

    loaded = merged_backend._loaded
    assert not isinstance(loaded.model, PeftModel)  # merged: no LoRA layers left to slow decoding
    assert loaded.model.get_input_embeddings() is loaded.base.get_input_embeddings()  # shared, not copied
    assert [c.id for c in merged_backend.models()] == ["assistant", "plain", "tuned-b"]

    tokenizer = byte_tokenizer()
    ids = torch.tensor([prompt_ids(tokenizer, [{"role": "user", "content": "adapt"}])])

    def greedy(model):
        out = model.generate(ids, max_new_tokens=8, do_sample=False, suppress_tokens=[1, 5])
        return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)

    unmerged = _with_adapters(tiny_gemma(len(tokenizer)), {"a": merged_backend._config.adapter})
    assert await text(merged_backend, "assistant") == greedy(unmerged)
    assert await text(merged_backend, "plain") == greedy(tiny_gemma(len(tokenizer)))
    b = _with_adapters(tiny_gemma(len(tokenizer)), {"b": merged_backend._config.adapters["tuned-b"]})
    assert await text(merged_backend, "tuned-b") == greedy(b)
    assert len({await text(merged_backend, m) for m in ("assistant", "plain", "tuned-b")}) == 3


def test_a_missing_adapter_is_refused_at_load_with_its_path(tmp_path):
    tokenizer = byte_tokenizer()
    tiny_gemma(len(tokenizer)).save_pretrained(str(tmp_path / "model"))
    tokenizer.save_pretrained(str(tmp_path / "model"))
    config = LocalModelConfig(path=tmp_path / "model", adapter=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_model(tmp_path / "model", config)


def test_the_embedded_default_serves_the_shipped_adapter_and_the_base_beside_it():
    from gateway.settings import SHIPPED_ADAPTER

    default = LocalModelConfig()
    assert default.merged_adapter == SHIPPED_ADAPTER
    assert (SHIPPED_ADAPTER / "adapter_config.json").is_file()
    assert (SHIPPED_ADAPTER / "adapter_model.safetensors").is_file()
    assert default.served_base == "gemma-3-270m-base"
    assert LocalModelConfig(tuned=False).merged_adapter is None
    assert LocalModelConfig(tuned=False).served_base is None
    with pytest.raises(ValueError, match="distinct"):
        LocalModelConfig(base_name="gemma-3-270m")


def test_openais_frequency_and_presence_penalties_lower_repeated_tokens():
    from gateway.backends.local.processors import Penalties

    logits = Penalties(0.5, 0.25)([5, 5, 7], torch.zeros(10))
    assert logits[5] == -(2 * 0.5 + 0.25) and logits[7] == -(0.5 + 0.25)
    assert logits[[0, 1, 2, 3, 4, 6, 8, 9]].abs().sum() == 0
    assert Penalties(0.5, 0.0)([], torch.zeros(3)).abs().sum() == 0  # the prompt does not count


async def test_an_adapters_sampling_defaults_apply_to_its_id_unless_the_request_sets_them(adapters, tmp_path):
    from gateway.backends.local.loader import generation_defaults
    from gateway.backends.local.processors import Penalties

    adapter = tmp_path / "with-defaults"
    adapter.mkdir()
    (adapter / "generation.json").write_text('{"frequency_penalty": 0.3}')
    assert generation_defaults(adapter) == {"frequency_penalty": 0.3}
    (adapter / "generation.json").write_text('{"frequency_penalty": "lots"}')
    with pytest.raises(ValueError, match="sampling defaults"):
        generation_defaults(adapter)

    tokenizer = byte_tokenizer()
    loaded = LoadedModel(tiny_gemma(len(tokenizer)), tokenizer, stop_token_ids(tokenizer), peft=False,
                         defaults={"frequency_penalty": 0.3})  # fmt: skip
    backend = LocalBackend(LocalModelConfig(name="assistant"), tmp_path, loader=lambda: loaded)

    def penalties(**fields):
        return [
            p for p in backend._processors(make_generation("x", **fields), loaded) if isinstance(p, Penalties)
        ]

    assert [p._frequency for p in penalties(model="assistant")] == [0.3]
    assert penalties(model="assistant", frequency_penalty=0) == []  # the request's own value wins
    assert penalties(model="gemma-3-270m-base") == []  # the base has no such defaults
    assert [p._presence for p in penalties(model="assistant", presence_penalty=1.0)] == [1.0]
