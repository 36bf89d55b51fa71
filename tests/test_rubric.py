"""Rubrics: render/parse round trips (property-based), validation messages, bad rubric files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from curation.errors import RubricError
from curation.rubric import Rubric, RubricField, load_rubric, parse_rubric_text, rubric_from_dict

RUBRICS = Path(__file__).resolve().parent.parent / "rubrics"
RUBRIC_NAMES = ["surveillance_alert", "telemedicine_note", "elearning_lab"]

# Text that includes the templates' own separators and awkward characters, so the round trip is really tested.
TRICKY = ["; ", ", ", "\n", "Plan: ", "\nPlan: ", "Door ", " — ", ":", "none", "  ", "é", "{", "}", "|"]


def text_values(field: RubricField) -> st.SearchStrategy[str]:
    # Line separators other than \n would be "newlines" to str.splitlines but not to the template.
    odd_breaks = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
    alphabet = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=odd_breaks)
    pieces = st.one_of(st.text(alphabet=alphabet, min_size=1, max_size=12), st.sampled_from(TRICKY))
    return st.lists(pieces, min_size=1, max_size=6).map("".join)


def field_values(field: RubricField) -> st.SearchStrategy:
    if field.type in ("choice", "ordinal"):
        values = st.sampled_from(field.choices)
    elif field.type == "integer":
        low = int(field.min) if field.min is not None else -(10**9)
        high = int(field.max) if field.max is not None else 10**9
        values = st.integers(low, high)
    elif field.type == "number":
        scale = 10**field.decimals
        low = int((field.min if field.min is not None else -1e6) * scale)
        high = int((field.max if field.max is not None else 1e6) * scale)
        values = st.integers(low, high).map(lambda v: v / scale)
    elif field.type == "time":
        hours = st.integers(0, 23).map(lambda h: f"{h:02d}")
        minutes = st.integers(0, 59).map(lambda m: f"{m:02d}")
        if field.format == "hh:mm":
            values = st.tuples(hours, minutes).map(":".join)
        elif field.format == "hh:mm:ss":
            values = st.tuples(hours, minutes, minutes).map(":".join)
        else:
            values = st.tuples(st.integers(0, 999).map(lambda m: f"{m:02d}"), minutes).map(":".join)
    else:
        values = text_values(field)
    return st.one_of(st.none(), values) if not field.required else values


def fields_strategy(rubric: Rubric) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({f.name: field_values(f) for f in rubric.fields})


@pytest.mark.parametrize("name", RUBRIC_NAMES)
def test_shipped_rubrics_load_and_examples_round_trip(name: str) -> None:
    rubric = load_rubric(RUBRICS / f"{name}.yaml")
    assert rubric.examples, "each shipped rubric has examples annotators can follow"
    for example in rubric.examples:
        text = rubric.render(example.fields)
        assert rubric.parse(text) == rubric.normalise(example.fields)


def test_surveillance_alert_renders_the_documented_line() -> None:
    rubric = load_rubric(RUBRICS / "surveillance_alert.yaml")
    fields = {"event": "TAILGATING", "persons": 2, "badge_events": 1, "door": 14, "time": "02:14"}
    assert rubric.render(fields) == "TAILGATING — 2 persons, 1 badge event, Door 14, 02:14"
    one = dict(fields, persons=1, badge_events=2, event="NORMAL_ENTRY")
    assert rubric.render(one) == "NORMAL_ENTRY — 1 person, 2 badge events, Door 14, 02:14"
    # Case and spacing from a model's output are tolerated and normalised.
    assert rubric.parse("  tailgating — 2 persons,  1 badge event, Door 14, 02:14\n") == fields


@pytest.mark.parametrize("name", RUBRIC_NAMES)
def test_round_trip_property(name: str) -> None:
    rubric = load_rubric(RUBRICS / f"{name}.yaml")

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(fields_strategy(rubric))
    def check(fields: dict) -> None:
        problems = rubric.validate_fields(fields)
        if problems:
            # Only free text may be rejected (a separator inside it); typed values are always valid here.
            assert all(rubric.field_map[p.split(":")[0]].type == "text" for p in problems), problems
            with pytest.raises(RubricError):
                rubric.render(fields)
            return
        normalised = rubric.normalise(fields)
        assert rubric.parse(rubric.render(fields)) == normalised

    check()


@st.composite
def random_rubrics(draw) -> tuple[Rubric, dict]:
    """Random templates: separators drawn from awkward strings, fields of every type."""
    n = draw(st.integers(1, 5))
    types = draw(st.lists(st.sampled_from(["choice", "integer", "number", "time", "text", "ordinal"]), min_size=n,
                          max_size=n))
    fields = []
    for index, kind in enumerate(types):
        spec = {"name": f"f{index}", "type": kind, "required": draw(st.booleans())}
        if kind in ("choice", "ordinal"):
            spec["choices"] = draw(st.lists(st.sampled_from(["A", "AB", "b", "yes", "no", "x y", "Z9"]), min_size=2,
                                            max_size=4, unique_by=str.lower))
        if kind == "text":
            spec["multiline"] = draw(st.booleans())
        fields.append(spec)
    separators = draw(st.lists(st.sampled_from([" ", ", ", "; ", " — ", "\n", ": ", " | ", "=", "/"]), min_size=n,
                               max_size=n))
    prefix = draw(st.sampled_from(["", "Result: ", "<", "["]))
    template = prefix + "".join(
        ("" if i == 0 else separators[i]) + "{" + f["name"] + "}" for i, f in enumerate(fields)
    ) + draw(st.sampled_from(["", ".", ">", "]"]))
    data = {"name": "random", "prompt": "p", "fields": fields, "output": {"template": template}}
    try:
        rubric = rubric_from_dict(data)
    except RubricError:
        assume(False)
    values = draw(fields_strategy(rubric))
    return rubric, values


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(random_rubrics())
def test_round_trip_random_templates(case: tuple[Rubric, dict]) -> None:
    rubric, fields = case
    if rubric.validate_fields(fields):
        return
    assert rubric.parse(rubric.render(fields)) == rubric.normalise(fields)


def test_validate_names_each_bad_field() -> None:
    rubric = load_rubric(RUBRICS / "surveillance_alert.yaml")
    problems = rubric.validate_fields({"event": "PARTY", "persons": -1, "badge_events": "two", "door": 14,
                                       "time": "25:00", "colour": "red"})
    joined = " | ".join(problems)
    for expected in ("event: 'PARTY' is not one of", "persons: -1 is below the minimum 0",
                     "badge_events: 'two' is not a whole number", "time: '25:00' is out of range", "colour"):
        assert expected in joined
    assert rubric.validate_fields({"event": "INTRUSION", "persons": "1", "badge_events": 0, "door": 3,
                                   "time": "23:59"}) == []


def test_missing_required_and_optional_fields() -> None:
    rubric = load_rubric(RUBRICS / "telemedicine_note.yaml")
    example = dict(rubric.examples[1].fields)
    assert example["pain_score"] is None
    text = rubric.render(example)
    assert text.endswith("Pain score: none")
    assert rubric.parse(text)["pain_score"] is None
    assert "complaint: required" in rubric.validate_fields(dict(example, complaint="  "))


def test_text_containing_the_next_separator_is_rejected_by_name() -> None:
    rubric = load_rubric(RUBRICS / "telemedicine_note.yaml")
    fields = dict(rubric.examples[0].fields, history="Fell.\nPlan: none yet")
    # "\nPlan: " inside history is fine: the separator after history is "\nObservations: ".
    assert rubric.parse(rubric.render(fields)) == rubric.normalise(fields)
    bad = dict(fields, observations="Swelling.\nPlan: X-ray")
    problems = rubric.validate_fields(bad)
    assert len(problems) == 1 and problems[0].startswith("observations:")


def test_parse_rejects_text_that_does_not_fit() -> None:
    rubric = load_rubric(RUBRICS / "surveillance_alert.yaml")
    with pytest.raises(RubricError, match="does not match the rubric template"):
        rubric.parse("Someone went through the door at night")
    assert rubric.try_parse("INTRUSION — 1 person, 0 badge events, Door 3") is None
    with pytest.raises(RubricError, match="time"):
        rubric.parse("INTRUSION — 1 person, 0 badge events, Door 3, 24:10")


def test_version_ignores_layout_but_not_content() -> None:
    text = (RUBRICS / "surveillance_alert.yaml").read_text()
    base = parse_rubric_text(text)
    reformatted = parse_rubric_text(yaml.safe_dump(yaml.safe_load(text), sort_keys=True, width=60))
    assert reformatted.version == base.version
    changed = parse_rubric_text(text.replace("max: 20\n    description: People", "max: 30\n    description: People"))
    assert changed.version != base.version


BAD_RUBRICS = {
    "yaml_syntax": ("name: x\nprompt: p\nfields:\n  - name: a\n    type: choice\n   choices: [a, b]\n",
                    r"line \d+: YAML syntax error"),
    "missing_prompt": ("name: x\nfields:\n  - {name: a, type: integer}\noutput: {template: '{a}'}\n",
                       r"prompt: Field required"),
    "choice_without_choices": (
        "name: x\nprompt: p\nfields:\n  - name: a\n    type: integer\n  - name: kind\n    type: choice\n"
        "output: {template: '{a} {kind}'}\n",
        r"line 6: fields\[1\] \(kind\): a choice or ordinal field needs at least 2 choices"),
    "unknown_type": ("name: x\nprompt: p\nfields:\n  - name: a\n    type: colour\noutput: {template: '{a}'}\n",
                     r"line 5: fields\[0\] \(a\)\.type: Input should be"),
    "unknown_template_field": ("name: x\nprompt: p\nfields:\n  - {name: a, type: integer}\n"
                               "output: {template: '{a} {b}'}\n", r"output.template: '\{b\}' is not a field"),
    "field_not_in_template": ("name: x\nprompt: p\nfields:\n  - {name: a, type: integer}\n"
                              "  - {name: b, type: integer}\noutput: {template: 'A={a}'}\n",
                              r"fields \['b'\] are missing"),
    "adjacent_fields": ("name: x\nprompt: p\nfields:\n  - {name: a, type: integer}\n  - {name: b, type: integer}\n"
                        "output: {template: '{a}{b}'}\n", r"put literal text before '\{b\}'"),
    "bad_example": ("name: x\nprompt: p\nfields:\n  - {name: a, type: integer, max: 3}\n"
                    "output: {template: 'A={a}'}\nexamples:\n  - fields: {a: 9}\n",
                    r"examples\[0\]: a: 9 is above the maximum 3"),
    "example_output_mismatch": ("name: x\nprompt: p\nfields:\n  - {name: a, type: integer}\n"
                                "output: {template: 'A={a}'}\nexamples:\n  - {fields: {a: 2}, output: 'A=3'}\n",
                                r"examples\[0\]\.output: the template renders 'A=2'"),
    "rare_not_a_choice": ("name: x\nprompt: p\nfields:\n  - {name: a, type: choice, choices: [u, v], rare: [w]}\n"
                          "output: {template: 'A={a}'}\n", r"rare values \['w'\] are not among the choices"),
    "not_a_mapping": ("- just\n- a list\n", r"a rubric is a YAML mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD_RUBRICS))
def test_bad_rubric_messages(case: str, tmp_path: Path) -> None:
    text, pattern = BAD_RUBRICS[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    with pytest.raises(RubricError) as info:
        load_rubric(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert pytest.importorskip("re").search(pattern, message), message


def test_cli_rubric_check_bad_file_prints_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_RUBRICS["choice_without_choices"][0])
    result = subprocess.run([sys.executable, "-m", "curation.cli", "rubric", "check", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "fields[1] (kind)" in lines[0], result.stderr
    ok = subprocess.run([sys.executable, "-m", "curation.cli", "rubric", "check", "surveillance_alert", "--json"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and '"ok": true' in ok.stdout
