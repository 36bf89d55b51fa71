"""The Label Studio labelling config made from a rubric, and results <-> rubric fields (no server needed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from conftest import RUBRICS
from hypothesis import given, settings
from hypothesis import strategies as st
from label_studio_sdk.label_interface import LabelInterface

from annotate_ui.label_studio.config import (
    LabelStudioError,
    fields_from_result,
    instructions_html,
    label_config,
    result_from_fields,
)
from curation.errors import RubricError
from curation.rubric import load_rubric

RUBRIC_NAMES = ["surveillance_alert", "telemedicine_note", "elearning_lab"]
TAGS = {"choice": "Choices", "ordinal": "Choices", "integer": "Number", "number": "Number", "text": "TextArea",
        "time": "TextArea"}


@pytest.fixture(scope="module")
def alert():
    return load_rubric(RUBRICS / "surveillance_alert.yaml")


@pytest.mark.parametrize("name", RUBRIC_NAMES)
def test_config_has_the_video_and_one_control_per_field(name):
    rubric = load_rubric(RUBRICS / f"{name}.yaml")
    config = label_config(rubric)
    LabelInterface(config).validate()  # the SDK's own parser accepts it
    root = ET.fromstring(config)
    video = root.find("Video")
    assert video.get("value") == "$video" and video.get("frameRate") == "$fps"
    controls = [el for el in root.iter() if el.get("toName") == "video"]
    assert [el.get("name") for el in controls] == [f.name for f in rubric.fields]
    for element, field in zip(controls, rubric.fields, strict=True):
        assert element.tag == TAGS[field.type]
        assert element.get("required") == ("true" if field.required else "false")
        if field.choices:
            assert [c.get("value") for c in element.findall("Choice")] == field.choices
            assert element.get("choice") == "single-radio"
        if field.type in ("integer", "number"):
            assert float(element.get("min")) == field.min and float(element.get("max")) == field.max
            assert float(element.get("step")) == (1 if field.type == "integer" else 10 ** -field.decimals)
        if field.type in ("text", "time"):
            assert element.get("maxSubmissions") == "1"
        if field.type == "time":
            assert element.get("placeholder") == field.format


def test_config_takes_a_fixed_frame_rate_and_refuses_nonsense(alert):
    assert ET.fromstring(label_config(alert, frame_rate=29.97)).find("Video").get("frameRate") == "29.97"
    with pytest.raises(LabelStudioError, match="frame_rate"):
        label_config(alert, frame_rate=0)


def test_config_escapes_descriptions_and_instructions_become_safe_html(alert):
    rubric = alert.model_copy(deep=True)
    rubric.fields[0].description = 'doors "A" & <B>'
    rubric.instructions = "Press **Space**.\n\n<script>alert(1)</script>"
    root = ET.fromstring(label_config(rubric))  # still well-formed XML
    assert any(h.get("value") == 'event: doors "A" & <B>' for h in root.iter("Header"))
    html = instructions_html(rubric)
    assert "<strong>Space</strong>" in html and "<script>" not in html


@pytest.mark.parametrize("name", RUBRIC_NAMES)
def test_examples_round_trip_and_the_sdk_accepts_the_results(name):
    rubric = load_rubric(RUBRICS / f"{name}.yaml")
    interface = LabelInterface(label_config(rubric))
    for example in rubric.examples:
        result = result_from_fields(rubric, example.fields)
        assert interface.validate_annotation({"result": result})
        assert fields_from_result(rubric, result) == rubric.normalise(example.fields)


def test_an_empty_optional_field_gives_no_item_and_comes_back_empty():
    rubric = load_rubric(RUBRICS / "telemedicine_note.yaml")
    fields = dict(rubric.examples[1].fields)  # pain_score: null
    result = result_from_fields(rubric, fields)
    assert "pain_score" not in {item["from_name"] for item in result}
    assert fields_from_result(rubric, result)["pain_score"] is None
    multiline = next(item for item in result if item["from_name"] == "history")
    assert fields_from_result(rubric, result)["history"] == multiline["value"]["text"][0]


@settings(max_examples=60, deadline=None)
@given(
    event=st.sampled_from(["NO_ACTIVITY", "NORMAL_ENTRY", "TAILGATING", "INTRUSION"]),
    persons=st.integers(0, 20),
    badges=st.integers(0, 20),
    door=st.integers(0, 9999),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
)
def test_any_valid_alert_round_trips(event, persons, badges, door, hour, minute):
    rubric = load_rubric(RUBRICS / "surveillance_alert.yaml")
    fields = {"event": event, "persons": persons, "badge_events": badges, "door": door,
              "time": f"{hour:02d}:{minute:02d}"}
    assert fields_from_result(rubric, result_from_fields(rubric, fields)) == fields


def _item(name, kind, value):
    return {"from_name": name, "to_name": "video", "type": kind, "value": value}


GOOD = [_item("event", "choices", {"choices": ["TAILGATING"]}), _item("persons", "number", {"number": 2}),
        _item("badge_events", "number", {"number": 1}), _item("door", "number", {"number": 14}),
        _item("time", "textarea", {"text": ["02:14"]})]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r[:1] + r[2:], r"persons: required"),
        (lambda r: [_item("event", "choices", {"choices": ["FIRE"]})] + r[1:], r"event: 'FIRE' is not one of"),
        (lambda r: r[:1] + [_item("persons", "number", {"number": "two"})] + r[2:], r"persons: 'number' must be a"),
        (lambda r: r[:1] + [_item("persons", "number", {"number": True})] + r[2:], r"persons: 'number' must be a"),
        (lambda r: [_item("event", "choices", {"choices": "TAILGATING"})] + r[1:], r"event: 'choices' must be a list"),
        (lambda r: r[:4] + [_item("time", "textarea", {"text": ["2:14 am"]})], r"time: '2:14 am' is not a time"),
        (lambda r: r[:4] + [_item("time", "textarea", {"text": ["02:14", "03:00"]})], r"time: one line expected"),
        (lambda r: r[:4] + [_item("time", "textarea", {"text": 214})], r"time: 'text' must be a list of strings"),
        (lambda r: r + [_item("weather", "choices", {"choices": ["rain"]})], r"control 'weather' is not a rubric"),
        (lambda r: r + r[:1], r"event: answered more than once"),
        (lambda r: r[:1] + [_item("persons", "number", {"number": 25})] + r[2:], r"persons: 25 is above the max"),
        (lambda r: r[:1] + [_item("persons", "number", {"number": 2.5})] + r[2:], r"persons: 2.5 is not a whole"),
        (lambda r: [{"to_name": "video"}] + r, r"result\[0\] is not a result item"),
    ],
)
def test_bad_results_name_the_field_and_the_problem(alert, change, message):
    assert fields_from_result(alert, GOOD)["event"] == "TAILGATING"
    with pytest.raises(LabelStudioError, match=message):
        fields_from_result(alert, change(list(GOOD)))


def test_every_problem_of_a_result_is_reported_at_once(alert):
    bad = [_item("event", "choices", {"choices": "x"}), _item("persons", "number", {"number": "2"}),
           _item("colour", "choices", {"choices": ["red"]})]
    with pytest.raises(LabelStudioError) as info:
        fields_from_result(alert, bad)
    assert all(name in str(info.value) for name in ("event:", "persons:", "'colour'"))
    with pytest.raises(LabelStudioError, match="must be a list of result items"):
        fields_from_result(alert, {"event": "TAILGATING"})


def test_result_from_fields_validates_first(alert):
    with pytest.raises(RubricError, match="persons"):
        result_from_fields(alert, {"event": "TAILGATING", "persons": -1, "badge_events": 1, "door": 14,
                                   "time": "02:14"})
