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


def test_vocabulary_entries_read_as_text_with_a_visible_leading_space(tiny_tokenizer, tiny_model, tiny_sae):
    from workbench.features.evidence import logit_effects
    from workbench.model.rendering import token_text

    spaced = tiny_tokenizer.convert_tokens_to_ids("Ġthe")
    assert spaced != tiny_tokenizer.unk_token_id
    assert token_text(tiny_tokenizer, spaced) == "␣the"
    promoted, suppressed = logit_effects(tiny_model, tiny_sae, 3)
    tokens = [e.token for e in promoted + suppressed]
    assert tokens and not any("Ġ" in t or "Ċ" in t for t in tokens), tokens
