"""A form generated from the rubric: one widget per field, labelled with the field's name, and a live preview.

The widgets live outside ``st.form`` on purpose: every committed value reruns the page, so the rendered output
text and the validation errors (named by field) follow the annotator's typing. Choice fields are radios whose
options carry their number key (``1 · NO_ACTIVITY``); the value stays the bare choice.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from curation.rubric import Rubric, RubricField


def _choice_label(choices: list[str]):
    numbers = {choice: i + 1 for i, choice in enumerate(choices)}
    return lambda c: f"{numbers[c]} · {c}" if numbers[c] <= 9 else c


def field_widget(rubric_field: RubricField, key: str, default: Any = None) -> Any:
    """One widget for one rubric field; returns its value (None when empty)."""
    f = rubric_field
    # The description is a placeholder, not a help icon: help icons are buttons, and Tab would stop on each.
    hint = (f.description or f.type) + ("" if f.required else " (optional)")
    if f.type in ("choice", "ordinal"):
        index = f.choices.index(default) if default in f.choices else None
        return st.radio(f.name, f.choices, index=index, key=key, horizontal=True,
                        format_func=_choice_label(f.choices))
    if f.type in ("integer", "number"):
        integer = f.type == "integer"
        cast = int if integer else float
        return st.number_input(
            f.name, key=key, placeholder=hint, value=cast(default) if default is not None else None,
            min_value=cast(f.min) if f.min is not None else None, max_value=cast(f.max) if f.max is not None else None,
            step=1 if integer else 10 ** -f.decimals, format=None if integer else f"%.{f.decimals}f",
        )
    if f.type == "time":
        value = st.text_input(f.name, value=default or "", key=key, placeholder=f"{f.format} · {hint}",
                              max_chars=len(f.format) + 2)
        return value.strip() or None
    if f.multiline:
        value = st.text_area(f.name, value=default or "", key=key, placeholder=hint, max_chars=f.max_length,
                             height=100)
    else:
        value = st.text_input(f.name, value=default or "", key=key, placeholder=hint, max_chars=f.max_length)
    return value if value.strip() else None


def rubric_fields(rubric: Rubric, prefix: str, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Widgets for every field of ``rubric`` (keys ``prefix + name``); returns {field: value}."""
    defaults = defaults or {}
    return {f.name: field_widget(f, prefix + f.name, defaults.get(f.name)) for f in rubric.fields}


def read_fields(rubric: Rubric, prefix: str) -> dict[str, Any]:
    """The current values of the widgets made by :func:`rubric_fields` (for button callbacks)."""
    values = {}
    for f in rubric.fields:
        value = st.session_state.get(prefix + f.name)
        if isinstance(value, str) and f.type != "text":
            value = value.strip()
        values[f.name] = value if value not in ("", None) else None
    return values


def check(rubric: Rubric, values: dict[str, Any]) -> tuple[str | None, list[str], list[str]]:
    """(rendered output text or None, required fields still empty, other problems named by field)."""
    problems = rubric.validate_fields(values)
    empty = [p.split(":", 1)[0] for p in problems if p.endswith(": required")]
    others = [p for p in problems if not p.endswith(": required")]
    return (rubric.render(values) if not problems else None), empty, others


def preview(rubric: Rubric, values: dict[str, Any]) -> bool:
    """Show the output text the model will learn, or what is missing and wrong, by field. True when valid."""
    text, empty, others = check(rubric, values)
    st.markdown("**Output text**")
    if text is not None:
        st.code(text, language=None, wrap_lines=True)
        return True
    if empty:
        st.caption("Still to fill: " + ", ".join(f"**{name}**" for name in empty))
    for problem in others:
        name, _, message = problem.partition(":")
        st.error(f"**{name}**:{message}", icon=None)
    return False
