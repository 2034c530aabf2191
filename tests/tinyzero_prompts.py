"""TinyZero's prompt templates, written out byte for byte as the reference the tests check against."""

COUNTDOWN_BASE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer.\n"
    "User: Using the numbers {numbers}, create an equation that equals {target}. You can use basic arithmetic "
    "operations (+, -, *, /) and each number can only be used once. Show your work in <think> </think> tags. And "
    "return the final answer in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>.\n"
    "Assistant: Let me solve this step by step.\n<think>"
)

COUNTDOWN_QWEN_INSTRUCT = (
    "<|im_start|>system\nYou are a helpful assistant. You first thinks about the reasoning process in the mind and "
    "then provides the user with the answer.<|im_end|>\n<|im_start|>user\n Using the numbers {numbers}, create an "
    "equation that equals {target}. You can use basic arithmetic operations (+, -, *, /) and each number can only be "
    "used once. Show your work in <think> </think> tags. And return the final answer in <answer> </answer> tags, for "
    "example <answer> (1 + 2) / 3 </answer>.<|im_end|>\n<|im_start|>assistant\nLet me solve this step by step.\n"
    "<think>"
)

MULTIPLY = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
    "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> RESULT_NUMBER </answer>. \n"
    "User: Give me the answer of the following equation: {num1} {op} {num2}.\n"
    "Assistant: Let me solve this step by step.\n<think>"
)


def countdown_prompt(numbers, target, template="base"):
    text = COUNTDOWN_BASE if template == "base" else COUNTDOWN_QWEN_INSTRUCT
    return text.format(numbers=list(numbers), target=target)


def multiply_prompt(a, b):
    return MULTIPLY.format(num1=a, op="*", num2=b)
