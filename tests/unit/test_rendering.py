"""Rendering chats into tokens: prefills (the start of the answer) are continued."""

from workbench.core.positions import ROLE_INDEX
from workbench.model.rendering import render_conversation


def test_a_prefill_is_continued_and_the_response_joins_it(tiny_tokenizer):
    from workbench.causal.measurements import first_answer_token

    messages = [{"role": "user", "content": "What is the capital of Kenya?"},
                {"role": "assistant", "content": "The capital of Kenya is"}]
    item = render_conversation(tiny_tokenizer, messages, "Nairobi.")
    prompt_text = tiny_tokenizer.decode(item.input_ids[: item.prompt_length])
    assert prompt_text.endswith("The capital of Kenya is")  # left open: no end-of-turn after the prefill
    assert item.roles[item.prompt_length - 1] == ROLE_INDEX["assistant"]
    # The response continues the sentence: its first token is the answer with its space.
    assert item.input_ids[item.prompt_length] == first_answer_token(tiny_tokenizer, "Nairobi", after_prefill=True)
    assert tiny_tokenizer.decode(item.input_ids) .endswith("The capital of Kenya is Nairobi.")
    without = render_conversation(tiny_tokenizer, messages[:1], "Nairobi.")
    assert without.input_ids[without.prompt_length] == first_answer_token(tiny_tokenizer, "Nairobi")
