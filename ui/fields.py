"""Input fields that reject what they cannot take, where it was typed.

Streamlit's number inputs clamp or drop out-of-range entries silently (a feature index of 99999
leaves the old one showing, ``1e3`` reads as 1, a count of 0 keeps the previous value). A whole
number typed here is parsed strictly; anything else is an error next to the field and the field
gives ``None``, so the page shows no result for a value the user did not ask for.
"""

from __future__ import annotations

import re
from typing import Any

import streamlit as st

WHOLE_NUMBER = re.compile(r"\s*[+-]?\d+\s*")


def parse_whole_number(text: str, label: str, low: int, high: int) -> int:
    """``text`` as a whole number in ``[low, high]``; a ``ValueError`` that says what to type otherwise."""
    if not text.strip():
        raise ValueError(f"{label}: type a whole number from {low} to {high}")
    if not WHOLE_NUMBER.fullmatch(text):
        raise ValueError(f"{label}: {text.strip()!r} is not a whole number; type digits only, from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{label}: {value} is out of range; type a whole number from {low} to {high}")
    return value


def int_field(container: Any, label: str, low: int, high: int, *, key: str, default: int,
              help: str | None = None) -> int | None:
    """A whole-number field (a text box with ``key``): the value, or ``None`` after showing why not."""
    if key not in st.session_state:
        st.session_state[key] = str(default)
    text = container.text_input(label, key=key, help=help)
    try:
        return parse_whole_number(text, label.split(" (")[0], low, high)
    except ValueError as error:
        container.error(str(error))
        return None
