"""A Label Studio labelling config made from a rubric, and the mapping between its results and rubric fields.

One control per rubric field, named after the field, all pointing at the ``<Video>`` tag:

============================  ====================================================================
rubric field                  Label Studio control (result ``value``)
============================  ====================================================================
``choice``, ``ordinal``       ``<Choices choice="single-radio">`` (``{"choices": ["TAILGATING"]}``)
``integer``                   ``<Number step="1" min max>`` (``{"number": 2}``)
``number``                    ``<Number step="0.1" min max>``, step from ``decimals`` (``{"number": 37.5}``)
``text``                      ``<TextArea maxSubmissions="1">``, 4 rows if multiline (``{"text": ["…"]}``)
``time``                      ``<TextArea maxSubmissions="1" placeholder="hh:mm">`` (``{"text": ["02:14"]}``)
============================  ====================================================================

``time`` is a one-line TextArea rather than a Number: a clock time typed as the annotator reads it off the
image (``02:14``) keeps its format, where a number of minutes would not; Label Studio's open edition cannot
check a pattern in a TextArea, so the value is checked against the rubric's format when it comes back
(:func:`fields_from_result` raises, naming the field). Optional fields are ``required="false"``: no result
item means no value. The ``<Video>`` tag takes its ``frameRate`` from each task's ``fps`` (the clip's real
frame rate), so frame stepping in Label Studio lands on real frames.

Example::

    rubric = load_rubric("rubrics/surveillance_alert.yaml")
    config = label_config(rubric)                        # XML for projects.create(label_config=...)
    result = result_from_fields(rubric, {"event": "TAILGATING", "persons": 2, ...})
    fields_from_result(rubric, result)                   # the same fields back
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from curation.errors import CliptuneError, RubricError
from curation.rubric import Rubric, RubricField

VIDEO_TAG = "video"  # name of the <Video> object tag and of the task data key holding the proxy URL
FPS_KEY = "fps"  # task data key holding the clip's frame rate
RESULT_TYPES = {"choice": "choices", "ordinal": "choices", "integer": "number", "number": "number",
                "text": "textarea", "time": "textarea"}
VALUE_KEYS = {"choices": "choices", "number": "number", "textarea": "text"}


class LabelStudioError(CliptuneError):
    """Label Studio data that cliptune cannot use as it is: a bad export, a result that does not fit the rubric."""


def label_config(rubric: Rubric, *, frame_rate: float | str = f"${FPS_KEY}") -> str:
    """The labelling config (XML) for ``rubric``: the clip's video, then one control per field with its help.

    ``frame_rate`` is a number, or ``"$fps"`` (the default) to read each task's own frame rate.
    """
    if not isinstance(frame_rate, str) and not (isinstance(frame_rate, int | float) and frame_rate > 0):
        raise LabelStudioError(f"frame_rate must be a positive number or a task variable like '$fps': {frame_rate!r}")
    view = ET.Element("View")
    ET.SubElement(view, "Header", value=rubric.name.replace("_", " "))
    ET.SubElement(view, "Video", name=VIDEO_TAG, value=f"${VIDEO_TAG}", frameRate=str(frame_rate))
    for field in rubric.fields:
        label = f"{field.name} ({field.format})" if field.type == "time" else field.name
        help_text = f"{label}: {field.description}" if field.description else label
        if not field.required:
            help_text += " (optional)"
        ET.SubElement(view, "Header", value=help_text, size="5")
        _control(view, field)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode")


def _control(parent: ET.Element, field: RubricField) -> ET.Element:
    attrs = {"name": field.name, "toName": VIDEO_TAG, "required": "true" if field.required else "false"}
    if field.type in ("choice", "ordinal"):
        control = ET.SubElement(parent, "Choices", {**attrs, "choice": "single-radio", "showInline": "true"})
        for choice in field.choices:
            ET.SubElement(control, "Choice", value=choice)
        return control
    if field.type in ("integer", "number"):
        step = "1" if field.type == "integer" else f"{10 ** -field.decimals:.{field.decimals}f}"
        bounds = {key: f"{value:g}" for key, value in (("min", field.min), ("max", field.max)) if value is not None}
        return ET.SubElement(parent, "Number", {**attrs, "step": step, **bounds})
    rows = "4" if field.type == "text" and field.multiline else "1"
    attrs |= {"maxSubmissions": "1", "editable": "true", "rows": rows}
    if field.type == "time":
        attrs["placeholder"] = field.format
    return ET.SubElement(parent, "TextArea", attrs)


def instructions_html(rubric: Rubric) -> str:
    """The rubric's instructions (markdown) as the HTML Label Studio shows in its instructions panel."""
    from markdown_it import MarkdownIt

    # "js-default" leaves raw HTML in the markdown escaped: instructions are text, not markup to trust.
    text = rubric.instructions or rubric.description or rubric.prompt
    return MarkdownIt("js-default").render(text)


def result_from_fields(rubric: Rubric, fields: dict[str, Any]) -> list[dict[str, Any]]:
    """Rubric fields -> a Label Studio result list (for predictions, or annotations made through the API).

    The fields are validated first (RubricError names each bad field); empty optional fields give no item.
    """
    normalised = rubric.normalise(fields)
    result = []
    for field in rubric.fields:
        value = normalised[field.name]
        if value is None:
            continue
        kind = RESULT_TYPES[field.type]
        payload: Any = [value] if kind in ("choices", "textarea") else value
        result.append({"from_name": field.name, "to_name": VIDEO_TAG, "type": kind,
                       "value": {VALUE_KEYS[kind]: payload}})
    return result


def fields_from_result(rubric: Rubric, result: Any) -> dict[str, Any]:
    """A Label Studio result list -> normalised rubric fields.

    Raises LabelStudioError naming every problem: a control the rubric does not have, a value of the wrong
    type, a choice that is not offered, a missing required field, a time not in the rubric's format.
    """
    if not isinstance(result, list):
        raise LabelStudioError(f"'result' must be a list of result items, not {type(result).__name__}")
    problems: list[str] = []
    raw: dict[str, Any] = {}
    for index, item in enumerate(result):
        if not isinstance(item, dict) or not isinstance(item.get("from_name"), str):
            problems.append(f"result[{index}] is not a result item with a 'from_name'")
            continue
        name = item["from_name"]
        field = rubric.field_map.get(name)
        if field is None:
            problems.append(f"control {name!r} is not a rubric field (fields: {', '.join(rubric.field_map)})")
            continue
        if name in raw:
            message = f"{name}: answered more than once; expected one answer"
            if message not in problems:
                problems.append(message)
            continue
        try:
            raw[name] = _value_of(field, item.get("value"))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if not problems:
        try:
            return rubric.normalise(raw)
        except RubricError as exc:
            problems.extend(exc.problems)
    raise LabelStudioError("; ".join(problems))


def _value_of(field: RubricField, value: Any) -> Any:
    kind = RESULT_TYPES[field.type]
    key = VALUE_KEYS[kind]
    if not isinstance(value, dict) or key not in value:
        raise ValueError(f"expected a {kind} value {{{key!r}: ...}}, got {_short(value)}")
    payload = value[key]
    if kind == "choices":
        if not isinstance(payload, list) or not all(isinstance(c, str) for c in payload):
            raise ValueError(f"'choices' must be a list of strings, got {_short(payload)}")
        if len(payload) > 1:
            raise ValueError(f"one choice expected, got {len(payload)}: {payload}")
        return payload[0] if payload else None
    if kind == "number":
        if isinstance(payload, bool) or not isinstance(payload, int | float):
            raise ValueError(f"'number' must be a number, got {_short(payload)}")
        return payload
    if isinstance(payload, str):
        payload = [payload]
    if not isinstance(payload, list) or not all(isinstance(t, str) for t in payload):
        raise ValueError(f"'text' must be a list of strings, got {_short(payload)}")
    entries = [t for t in payload if t.strip()]
    if len(entries) > 1 and not (field.type == "text" and field.multiline):
        raise ValueError(f"one line expected, got {len(entries)} entries")
    return "\n".join(entries) if entries else None


def _short(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
