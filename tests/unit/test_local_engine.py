"""The batching engine on a tiny random-weight Gemma 3: batching, seeds, finishing, processors,
steering."""

from __future__ import annotations

import asyncio

import pytest
import torch

from gateway.backends.local.engine import Engine
from gateway.backends.local.params import RowSpec, SamplingParams, SteeringVector
from gateway.backends.local.processors import BannedSequences, LogitBias
from gateway.backends.local.testing import tiny_loaded

pytestmark = pytest.mark.anyio

NO_STOP_TOKENS = LogitBias({"1": -100, "5": -100}, vocab_size=262)  # keep rows running to max_tokens


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded()


@pytest.fixture
def engine(loaded):
    engine = Engine(
        loaded.model,
        loaded.tokenizer,
        max_batch=8,
        batch_wait_s=0.05,
        stop_token_ids=loaded.stop_token_ids,
    )
    engine.start()
    yield engine
    engine.close()


def prompt(loaded, text):
    return tuple(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])


def row(ids, max_tokens=8, *, processors=(NO_STOP_TOKENS,), index=0, **sampling):
    sampling.setdefault("temperature", 0.0)
    params = SamplingParams(max_tokens=max_tokens, **sampling)
    return RowSpec(prompt_ids=ids, sampling=params, index=index, processors=processors)


async def run(engine, rows):
    """Text, finish reason and token count per choice index."""
    results = {}
    async for event in engine.submit(rows).events():
        text, _, _ = results.get(event.index, ("", None, 0))
        results[event.index] = (text + event.text, event.finish_reason, event.completion_tokens)
    return results


async def test_batched_greedy_rows_match_generate_run_alone(engine, loaded):
    texts = ["hi", "a longer prompt than the window", "mid-size one"]  # sliding window is 8
    prompts = [prompt(loaded, t) for t in texts]
    results = await asyncio.gather(*(run(engine, [row(p, 12)]) for p in prompts))
    assert list(engine.stats.batch_sizes) == [3]
    for ids, result in zip(prompts, results, strict=True):
        out = loaded.model.generate(
            torch.tensor([ids]), max_new_tokens=12, do_sample=False, suppress_tokens=[1, 5]
        )
        expected = loaded.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)
        assert result[0][0] == expected


async def test_concurrent_requests_share_forward_passes(engine, loaded):
    ids = prompt(loaded, "same")
    await asyncio.gather(*(run(engine, [row(ids, 10)]) for _ in range(4)))
    assert list(engine.stats.batch_sizes) == [4]
    assert engine.stats.forward_calls == 10  # one prefill + nine decode steps, shared by all four


async def test_rows_finish_independently_and_leave_the_batch(engine, loaded):
    ids = prompt(loaded, "x")
    short, long = await asyncio.gather(run(engine, [row(ids, 2)]), run(engine, [row(ids, 10)]))
    assert short[0][1:] == ("length", 2)
    assert long[0][1:] == ("length", 10)
    assert engine.stats.decode_row_steps == 2 + 8  # the short row left after its second token


async def test_same_seed_same_text_and_different_seed_different_text(engine, loaded):
    ids = prompt(loaded, "seeded")

    async def sample(seed):
        result = await run(engine, [row(ids, 16, temperature=1.0, top_p=0.95, seed=seed)])
        return result[0][0]

    first, again, other = await sample(7), await sample(7), await sample(8)
    assert first == again
    assert first != other


async def test_n_rows_of_one_request_are_distinct_choices(engine, loaded):
    ids = prompt(loaded, "n")
    rows = [row(ids, 12, index=i, temperature=1.0, seed=100 + i) for i in range(3)]
    results = await run(engine, rows)
    assert sorted(results) == [0, 1, 2]
    assert len({text for text, _, _ in results.values()}) == 3
    assert list(engine.stats.batch_sizes) == [3]


async def test_a_stop_token_finishes_the_row_with_stop(engine, loaded):
    force_eos = LogitBias({"1": 100}, vocab_size=262)
    result = await run(engine, [row(prompt(loaded, "q"), 8, processors=(force_eos,))])
    assert result[0] == ("", "stop", 1)


async def test_a_stop_string_truncates_the_text(engine, loaded):
    ids = prompt(loaded, "greedy")
    free = (await run(engine, [row(ids, 12)]))[0][0]
    stop = free[4:6]
    assert len(stop) == 2
    stopped = await run(engine, [row(ids, 12, stop=(stop,))])
    assert stopped[0][1] == "stop"
    assert stopped[0][0] == free[: free.index(stop)]


async def test_banned_sequences_change_the_greedy_continuation(engine, loaded):
    ids = prompt(loaded, "ban")
    free = (await run(engine, [row(ids, 6)]))[0][0]
    first_two = tuple(loaded.tokenizer(free[:2], add_special_tokens=False)["input_ids"])
    assert len(first_two) == 2
    banned = BannedSequences([first_two])
    result = await run(engine, [row(ids, 6, processors=(NO_STOP_TOKENS, banned))])
    assert result[0][0][:1] == free[:1]  # the first token is still allowed
    assert result[0][0][:2] != free[:2]  # the pair is not


async def test_cancelled_request_stops_costing_compute(engine, loaded):
    ticket = engine.submit([row(prompt(loaded, "long"), 400)])
    events = ticket.events()
    await anext(events)
    ticket.cancel()
    await events.aclose()
    after = await run(engine, [row(prompt(loaded, "next"), 3)])  # waits for the batch to end
    assert after[0][1:] == ("length", 3)
    assert engine.stats.decode_row_steps < 100


async def test_requests_arriving_during_a_batch_wait_for_the_next(engine, loaded):
    first = engine.submit([row(prompt(loaded, "first"), 30)]).events()
    await anext(first)
    second = await run(engine, [row(prompt(loaded, "second"), 3)])
    async for _ in first:
        pass
    assert second[0][1] == "length"
    assert list(engine.stats.batch_sizes) == [1, 1]


async def test_steering_moves_only_the_rows_that_asked(engine, loaded):
    ids = prompt(loaded, "steer me")
    plain = (await run(engine, [row(ids, 10)]))[0][0]
    vector = torch.randn(64, generator=torch.Generator().manual_seed(0)) * 50
    steered_row = RowSpec(
        prompt_ids=ids,
        sampling=SamplingParams(max_tokens=10, temperature=0.0),
        index=0,
        processors=(NO_STOP_TOKENS,),
        steering=(SteeringVector(layer=0, vector=vector),),
    )
    steered, unsteered = await asyncio.gather(run(engine, [steered_row]), run(engine, [row(ids, 10)]))
    assert list(engine.stats.batch_sizes)[-1] == 2
    assert unsteered[0][0] == plain
    assert steered[0][0] != plain
