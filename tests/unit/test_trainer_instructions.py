"""Generated instruction-following examples satisfy their constraints, by lm-eval's IFEval checkers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from evaluation.ifeval import use_shipped_punkt
from trainer.instructions import CONSTRAINTS, Example, generate, read_topics

TOPICS = Path(__file__).resolve().parents[2] / "trainer/data/instructions/topics.jsonl"


def _doc(e: Example) -> dict[str, Any]:
    """An IFEval row for lm-eval's checkers: the example's prompt and the checks it claims to pass."""
    return {
        "key": 0,
        "prompt": e.prompt,
        "instruction_id_list": [check for check, _ in e.checks],
        "kwargs": [kwargs for _, kwargs in e.checks],
    }


def test_every_generated_answer_passes_lm_evals_strict_checkers():
    use_shipped_punkt()
    from lm_eval.tasks.ifeval.utils import process_results

    examples = generate(read_topics(TOPICS), 300, seed=7)
    assert len(examples) == 300
    assert set(Counter(e.constraint for e in examples)) == set(CONSTRAINTS)
    import langdetect

    langdetect.DetectorFactory.seed = 0  # langdetect samples; lm-eval's casing checks call it
    for e in examples:
        if e.constraint == "uppercase":  # the checker also asks langdetect, unreliable on capitals
            assert e.answer == e.answer.upper() and any(c.isalpha() for c in e.answer)
            continue
        result = process_results(_doc(e), [e.answer])
        assert result["prompt_level_strict_acc"], (e.constraint, e.prompt, e.answer)


def test_a_violated_constraint_fails_the_same_checker():
    use_shipped_punkt()
    from lm_eval.tasks.ifeval.utils import process_results

    e = next(x for x in generate(read_topics(TOPICS), 40, seed=1) if x.constraint == "lowercase")
    doc = {
        "key": 0,
        "prompt": e.prompt,
        "instruction_id_list": ["change_case:english_lowercase"],
        "kwargs": [{}],
    }
    assert not process_results(doc, [e.answer.capitalize()])["prompt_level_strict_acc"]


def test_generation_is_seeded():
    topics = read_topics(TOPICS)
    assert generate(topics, 50, seed=3) == generate(topics, 50, seed=3)
    assert generate(topics, 50, seed=3) != generate(topics, 50, seed=4)


def test_every_combined_example_passes_all_of_its_checks_in_lm_eval():
    use_shipped_punkt()
    from lm_eval.tasks.ifeval.utils import process_results

    from trainer.instruction_combos import LAYOUTS, generate_combined

    examples = generate_combined(read_topics(TOPICS), 400, seed=11)
    assert len(examples) == 400
    assert {e.constraint for e in examples} == {f"combined:{name}" for name in LAYOUTS}
    assert all(len(e.checks) >= 2 for e in examples)
    assert sum(len(e.checks) >= 3 for e in examples) > 80  # stacked, not pairs only
    import langdetect

    langdetect.DetectorFactory.seed = 0
    failed = []
    for e in examples:
        result = process_results(_doc(e), [e.answer])
        if not result["prompt_level_strict_acc"]:
            failed.append((e.checks, result["inst_level_strict_acc"], e.answer))
    assert not failed, failed[:3]


def test_combined_generation_is_seeded_and_leaves_the_single_constraint_set_alone():
    from trainer.instruction_combos import generate_combined

    topics = read_topics(TOPICS)
    assert generate_combined(topics, 30, seed=3) == generate_combined(topics, 30, seed=3)
    assert generate_combined(topics, 30, seed=3) != generate_combined(topics, 30, seed=4)
