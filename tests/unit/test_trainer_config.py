"""The training config: YAML, then flags; every mistake named before anything loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.cli import main
from trainer.config import ConfigError, SFTConfig, load_config, parse_overrides

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_config_loads_and_flags_override_it():
    config = load_config(
        SFTConfig, ROOT / "trainer/configs/assistant.yaml", parse_overrides(["--lora-r", "8", "--seed=3"])
    )
    assert config.lora_r == 8 and config.seed == 3
    assert load_config(SFTConfig, ROOT / "trainer/configs/assistant.yaml").lora_r == 16
    polish = load_config(SFTConfig, ROOT / "trainer/configs/assistant-polish.yaml")
    assert polish.output_dir == Path("gateway/defaults/adapters/assistant")  # the shipped adapter
    assert polish.init_adapter == load_config(SFTConfig, ROOT / "trainer/configs/assistant.yaml").output_dir


def test_list_and_bool_and_null_values_are_read_from_flags():
    config = load_config(
        SFTConfig, None, {"target_modules": "q_proj, v_proj", "resume": "false", "threads": "null"}
    )
    assert config.target_modules == ["q_proj", "v_proj"]
    assert config.resume is False and config.threads is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lora_rank": "8"}, "unknown setting lora_rank"),
        ({"lora_r": "eight"}, "lora_r must be int"),
        ({"lora_r": "8.5"}, "lora_r must be int"),
        ({"resume": "maybe"}, "resume must be bool"),
        ({"learning_rate": "fast"}, "learning_rate must be float"),
    ],
)
def test_a_bad_setting_is_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(SFTConfig, None, overrides)


def test_a_config_file_that_is_missing_or_not_a_mapping_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(SFTConfig, tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(SFTConfig, tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("lora_r: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(SFTConfig, tmp_path / "bad.yaml")


@pytest.mark.parametrize("args", [["lora_r", "8"], ["--lora-r"]])
def test_malformed_flags_are_refused(args):
    with pytest.raises(ConfigError):
        parse_overrides(args)


def test_the_cli_reports_a_bad_config_in_one_line_with_status_2(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("lora_rank: 8\n")
    assert main(["sft", "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "unknown setting lora_rank" in err and "Traceback" not in err


def test_the_cli_reports_missing_data_before_training(tmp_path, capsys):
    code = main(
        [
            "sft",
            "--demos-dir",
            str(tmp_path / "none"),
            "--cache-dir",
            str(tmp_path),
            "--base-model",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "demonstrations directory" in capsys.readouterr().err


def test_a_missing_first_stage_is_named_before_the_model_loads(tmp_path, capsys):
    code = main(
        [
            "sft",
            "--init-adapter",
            str(tmp_path / "stage1"),
            "--alpaca-examples",
            "0",
            "--hh-rlhf-refusals",
            "0",
        ]
    )
    assert code == 2
    assert "init_adapter" in capsys.readouterr().err


def test_a_chat_template_other_than_the_served_one_is_refused(tmp_path):
    from gateway.backends.local.template import default_chat_template
    from trainer.chat import TemplateMismatchError, served_template

    class NoTemplate:
        chat_template = None

    assert served_template(NoTemplate()) == default_chat_template()
    same = tmp_path / "same.jinja"
    same.write_text(default_chat_template(), encoding="utf-8")
    assert served_template(NoTemplate(), same) == default_chat_template()
    other = tmp_path / "other.jinja"
    other.write_text(default_chat_template().replace("model", "assistant"), encoding="utf-8")
    with pytest.raises(TemplateMismatchError, match="not the one the gateway serves"):
        served_template(NoTemplate(), other)
