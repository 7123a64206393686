"""Turning conversations and free text into tokens, with the speaker turn of every token.

The model sees a conversation as its chat template renders it, followed by the
assistant's response (tokenised on its own, as generation would produce it). Every
token is labelled with the turn it belongs to, so evidence can be shown with turns
marked and position rules ("last prompt token", "answer tokens") can be applied.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workbench.core.positions import ROLE_INDEX


@dataclass(frozen=True)
class RenderedItem:
    """One conversation or text as the model reads it."""

    input_ids: list[int]
    token_strings: list[str]
    roles: list[int]
    """Index into ``core.positions.ROLES`` per token."""
    prompt_length: int
    """Tokens up to and including the generation prompt; the answer starts here.
    Equal to the length for free text."""

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)


def token_text(tokenizer: Any, token_id: int) -> str:
    """One vocabulary entry as a reader sees it: its decoded text, with a leading space shown as
    ``␣`` and line breaks as ``↵`` (never the byte-level BPE spelling, ``Ġenthus``)."""
    text = tokenizer.decode([int(token_id)], clean_up_tokenization_spaces=False)
    if not text:
        return tokenizer.convert_ids_to_tokens(int(token_id)) or f"<{token_id}>"
    return text.replace("\n", "↵").replace(" ", "␣", 1) if text.startswith(" ") else text.replace("\n", "↵")


def _as_dict(message: Any) -> dict[str, str]:
    if isinstance(message, Mapping):
        return {"role": str(message["role"]), "content": str(message["content"])}
    return {"role": str(message.role), "content": str(message.content)}


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool, prefill: bool = False) -> str:
    """The chat as text: complete turns, then the generation prompt; with ``prefill`` the last
    (assistant) message is left open for the model to continue."""
    if not messages:
        return ""
    if getattr(tokenizer, "chat_template", None):
        if prefill:
            return tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    # Models without a chat template (base models): a plain, readable transcript.
    if prefill:
        head = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages[:-1])
        return head + f"Assistant: {messages[-1]['content']}"
    text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
    return text + ("Assistant:" if generation_prompt else "")


def has_prefill(messages: Sequence[Any]) -> bool:
    """Whether a conversation ends with the start of the assistant's answer (a prefill)."""
    return bool(messages) and _as_dict(messages[-1])["role"] == "assistant"


def chat_prompt(tokenizer: Any, messages: Sequence[Any]) -> str:
    """The text the model continues: the chat with its generation prompt, or up to the end of a
    prefill when the last message is the start of the assistant's answer."""
    chat = [_as_dict(m) for m in messages]
    return _render(tokenizer, chat, generation_prompt=True, prefill=has_prefill(chat))


def join_response(messages: Sequence[Any], response: str) -> str:
    """The response as it follows the prompt: after a prefill it continues the sentence, so a
    response without leading space gets one (generated answers are stored stripped)."""
    if response and has_prefill(messages) and not response[0].isspace():
        return " " + response
    return response


def _char_roles(tokenizer: Any, messages: list[dict[str, str]], prompt: str) -> list[str]:
    """The role of every character of the rendered prompt."""
    roles = ["assistant"] * len(prompt)
    without_generation = _render(tokenizer, messages, generation_prompt=False)
    end_of_messages = len(without_generation) if prompt.startswith(without_generation) else len(prompt)
    starts = []
    for index in range(len(messages)):
        prefix = _render(tokenizer, messages[:index], generation_prompt=False)
        starts.append(len(prefix) if prompt.startswith(prefix) else None)
    cursor = 0
    for index, message in enumerate(messages):
        start = starts[index]
        if start is None:  # template rewrites earlier turns: fall back to finding the content
            found = prompt.find(message["content"], cursor)
            start = cursor if found < 0 else cursor + len(prompt[cursor:found].rstrip())
        if index == 0 and message["role"] != "system":
            # Some templates inject a default system prompt before the first turn.
            content_at = prompt.find(message["content"])
            header_at = prompt.rfind(message["role"], 0, max(content_at, 0))
            if header_at > 0:
                header_at = prompt.rfind("\n", 0, header_at) + 1  # the whole header line
                for char in range(0, header_at):
                    roles[char] = "system"
                start = header_at
        end = starts[index + 1] if index + 1 < len(messages) and starts[index + 1] is not None else None
        end = end if end is not None else (end_of_messages if index == len(messages) - 1 else len(prompt))
        for char in range(start, min(end, len(prompt))):
            roles[char] = message["role"]
        cursor = end
    return roles


def render_conversation(tokenizer: Any, messages: Sequence[Any], response: str | None = None) -> RenderedItem:
    """Render chat messages (ending before the assistant's answer, or with a prefill that starts
    it) plus an optional response. ``prompt_length`` counts the prefill: the last prompt token is
    the prefill's last token, where the answer's first token is predicted."""
    chat = [_as_dict(m) for m in messages]
    prompt = chat_prompt(tokenizer, chat)
    encoded = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    char_roles = _char_roles(tokenizer, chat, prompt)
    roles: list[int] = []
    for start, end in encoded["offset_mapping"]:
        position = start if end > start else max(start - 1, 0)
        role = char_roles[position] if position < len(char_roles) else "assistant"
        roles.append(ROLE_INDEX[role])
    input_ids = list(encoded["input_ids"])
    prompt_length = len(input_ids)
    if response:
        answer_ids = tokenizer(join_response(chat, response), add_special_tokens=False)["input_ids"]
        input_ids += list(answer_ids)
        roles += [ROLE_INDEX["assistant"]] * len(answer_ids)
    return RenderedItem(
        input_ids=input_ids,
        token_strings=tokenizer.batch_decode([[i] for i in input_ids]),
        roles=roles,
        prompt_length=prompt_length,
    )


def render_text(tokenizer: Any, text: str) -> RenderedItem:
    """Render free text (no chat template); a BOS token is added if the tokenizer uses one."""
    input_ids = list(tokenizer(text)["input_ids"])
    return RenderedItem(
        input_ids=input_ids,
        token_strings=tokenizer.batch_decode([[i] for i in input_ids]),
        roles=[ROLE_INDEX["text"]] * len(input_ids),
        prompt_length=len(input_ids),
    )


def pad_ids(sequences: Sequence[Sequence[int]], pad_id: int | None) -> tuple[Any, Any]:
    """Right-padded ``input_ids`` and ``attention_mask`` (``[batch, width]``, long) of token id lists."""
    import torch

    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id if pad_id is not None else 0, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(list(ids), dtype=torch.long)
        attention[row, : len(ids)] = 1
    return input_ids, attention


def pad_batch(items: Sequence[RenderedItem], pad_id: int | None) -> tuple[Any, Any]:
    """Right-padded ``input_ids`` and ``attention_mask`` (``[batch, width]``, long) of rendered items."""
    return pad_ids([item.input_ids for item in items], pad_id)


def last_prompt_token_batches(items: Sequence[RenderedItem], pad_id: int | None,
                              batch_size: int) -> Iterator[tuple[Any, Any, Any, Any]]:
    """The items in right-padded batches of ``batch_size``, for reading each row at its last prompt token:
    ``(input_ids, attention_mask, rows, last)`` per batch, ``rows`` and ``last`` the row and position
    indices (``[batch]``, long) that pick each row's last prompt token out of a ``[batch, pos, ...]`` tensor."""
    import torch

    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        input_ids, attention = pad_batch(chunk, pad_id)
        last = torch.tensor([item.prompt_length - 1 for item in chunk])
        yield input_ids, attention, torch.arange(len(chunk)), last
