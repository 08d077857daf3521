from __future__ import annotations

import time

import pytest

from classifiers.language import detect, guess


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("How can I reset my password for the company portal?", "en"),
        ("Wie kann ich mein Passwort für das Firmenportal zurücksetzen?", "de"),
        ("我怎样才能重置公司门户网站的密码？", "zh"),
        ("Ninawezaje kubadilisha nenosiri langu la tovuti ya kampuni?", "sw"),
        ("ฉันจะรีเซ็ตรหัสผ่านของพอร์ทัลบริษัทได้อย่างไร", "th"),
        ("كيف يمكنني إعادة تعيين كلمة المرور الخاصة بي؟", "ar"),
        ("회사 포털의 비밀번호를 어떻게 재설정할 수 있나요?", "ko"),
    ],
)
def test_detects_language(text: str, lang: str) -> None:
    assert detect(text) == lang


def test_short_text_falls_back_to_default() -> None:
    g = guess("ok", default="fr")
    assert (g.language, g.reliable) == ("fr", False)
    assert detect("1234 !!", default="es") == "es"


def test_detect_is_cheap_once_loaded() -> None:
    detect("warm up the model")
    started = time.perf_counter()
    for _ in range(200):
        detect("How can I kill a Python process that hangs on exit?")
    assert (time.perf_counter() - started) / 200 < 0.005
