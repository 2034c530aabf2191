"""Our templates render TinyZero's prompts byte for byte (the reference is written out in reference/tinyzero.py)."""

import pytest

from data_tools.templates import COUNTDOWN, MULTIPLY
from reference import tinyzero


@pytest.mark.parametrize("numbers, target", [([44, 19, 35], 60), ([1, 2, 3, 4], 10), ([99, 98, 97], 3)])
@pytest.mark.parametrize("template", ["base", "qwen-instruct"])
def test_countdown_templates_are_tinyzeros(template, numbers, target):
    assert COUNTDOWN[template].render(numbers=numbers, target=target) == tinyzero.countdown_prompt(
        numbers, target, template
    )


@pytest.mark.parametrize("a, b", [(12, 34), (0, 999), (72, 32)])
def test_multiply_template_is_tinyzeros(a, b):
    assert MULTIPLY["base"].render(num1=a, op="*", num2=b) == tinyzero.multiply_prompt(a, b)


def test_chat_template_is_system_and_user_without_prefill():
    messages = COUNTDOWN["chat"].render(numbers=[44, 19, 35], target=60)
    assert [m["role"] for m in messages] == ["system", "user"]
    instruct = COUNTDOWN["qwen-instruct"].render(numbers=[44, 19, 35], target=60)
    assert f"<|im_start|>system\n{messages[0]['content']}<|im_end|>" in instruct
    assert f"<|im_start|>user\n {messages[1]['content']}<|im_end|>" in instruct
    assert "Let me solve" not in messages[1]["content"] and "<think>" in messages[1]["content"]
