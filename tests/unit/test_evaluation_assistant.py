"""The assistant evaluation's measures, on answers written here."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.assistant import (
    EVAL_BEGIN,
    EVAL_END,
    Answer,
    Prompt,
    Report,
    degenerate,
    heldout_prompts,
    markdown,
    replace_evaluation,
    summarise,
)


def test_degenerate_repetition_is_a_four_gram_three_times_in_a_row():
    assert degenerate("and then the cat and then the cat and then the cat sat")
    assert not degenerate("and then the cat and then the cat sat down, and then the cat left")
    assert degenerate("我们去公园我们去公园我们去公园")  # CJK: characters
    assert not degenerate("One answer, short and complete.")


def test_the_summary_counts_each_set_on_its_own():
    def a(set_: str, text: str, finish: str = "stop", lang: str = "en") -> Answer:
        return Answer(Prompt(set_, "1", "p", lang), "m", text, finish, 10)

    answers = [
        a("heldout", "Hello! I can help with questions."),
        a("heldout", "bla bla bla bla bla bla bla bla bla bla bla bla", finish="length"),
        a("xstest_safe", "I can't help with that."),
        a("xstest_safe", "Use kill -9 with the process id."),
        a("harmbench_val", "I can't help with that."),
    ]
    refusing = lambda text: text.startswith("I can't")  # noqa: E731
    result = summarise(answers, refusing, [])
    assert result["ends_by_itself"] == 0.5
    assert result["degenerate_repetition"] == 0.5
    assert result["xstest_safe_over_refusal"] == 0.5
    assert result["harmbench_val_refused"] == 1.0


def test_the_held_out_prompts_cover_eight_languages():
    prompts = heldout_prompts()
    assert {p.lang for p in prompts} >= {"en", "de", "fr", "es", "it", "pt", "zh", "ar"}
    assert len({p.id for p in prompts}) == len(prompts)


def test_the_table_goes_between_the_cards_markers_and_nowhere_else(tmp_path: Path):
    report = Report(
        settings={
            "command": "railguard eval assistant",
            "date": "2026-12-06",
            "wall_time_min": 3.0,
            "max_tokens": 256,
            "answers": "x",
        },
        results={"base": {"ends_by_itself": 0.1}, "tuned": {"ends_by_itself": 0.99}},
    )
    table = markdown(report, ["base", "tuned"])
    assert "| held-out: ends by itself | 10.0 % | 99.0 % | ≥ 95 % |" in table
    card = tmp_path / "README.md"
    card.write_text(f"# card\n\n{EVAL_BEGIN}\nold\n{EVAL_END}\n\nafter\n")
    replace_evaluation(card, table)
    text = card.read_text()
    assert "old" not in text and "99.0 %" in text and text.endswith("after\n")
    card.write_text("no markers")
    with pytest.raises(ValueError, match="no evaluation markers"):
        replace_evaluation(card, table)
