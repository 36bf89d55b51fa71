"""Held-out scoring through the rubric and the forgetting probe (no model needed: known answers, known scores)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curation.errors import CliptuneError
from curation.media.video import sample_frames
from curation.rubric import load_rubric
from training.evaluate import score_outputs
from training.probes import clip_answer, forgetting_report, is_correct, load_probes, probe_items, score_probes

RUBRICS = Path(__file__).resolve().parent.parent / "rubrics"


@pytest.fixture(scope="module")
def rubric():
    return load_rubric(RUBRICS / "surveillance_alert.yaml")


def _fields(event="NORMAL_ENTRY", persons=1, badges=1, door=14, time="02:14"):
    return {"event": event, "persons": persons, "badge_events": badges, "door": door, "time": time}


def test_scores_follow_the_rubric(rubric) -> None:
    references = [_fields(), _fields("TAILGATING", 2, 1), _fields("NO_ACTIVITY", 0, 0, time="23:59"),
                  _fields("INTRUSION", 1, 0)]
    predictions = [
        rubric.render(_fields()),  # exactly right
        rubric.render(_fields("NORMAL_ENTRY", 2, 1)),  # wrong event (a rare one missed), persons right
        rubric.render(_fields("NO_ACTIVITY", 0, 0, time="00:00")) + "  ",  # a minute off across midnight: in tolerance
        "I think someone came in.",  # does not parse: wrong everywhere
    ]
    scores = score_outputs(rubric, predictions, references)
    assert scores["n"] == 4
    assert scores["format_validity"] == 0.75
    assert scores["exact_match"] == 0.25  # 00:00 is not 23:59: exact match is strict
    fields = scores["fields"]
    assert fields["event"]["accuracy"] == 0.5
    assert fields["persons"]["accuracy"] == 0.75
    assert fields["time"]["accuracy"] == 0.75  # tolerance 60 s, midnight wraps
    assert fields["time"]["mae"] == pytest.approx((0 + 0 + 86340) / 3)  # raw error, no wrap: says what it is
    assert fields["persons"]["mae"] == 0.0 and fields["persons"]["n_valid"] == 3
    per_class = fields["event"]["per_class"]
    assert per_class["TAILGATING"] == {"n": 1, "recall": 0.0, "predicted": 0, "precision": None, "rare": True}
    assert per_class["NORMAL_ENTRY"]["precision"] == 0.5 and per_class["NORMAL_ENTRY"]["recall"] == 1.0
    assert scores["rare"]["rare"] == {"n": 2, "exact_match": 0.0, "event_accuracy": 0.0}
    assert scores["rare"]["common"]["event_accuracy"] == 1.0
    with pytest.raises(ValueError, match="as many predictions"):
        score_outputs(rubric, predictions[:2], references)


def test_text_fields_get_chrf() -> None:
    rubric = load_rubric(RUBRICS / "telemedicine_note.yaml")
    example = rubric.examples[0].fields
    text_fields = [f.name for f in rubric.fields if f.type == "text" and example.get(f.name)]
    assert text_fields
    altered = dict(example)
    altered[text_fields[0]] = example[text_fields[0]] + " extra words"
    scores = score_outputs(rubric, [rubric.render(example), rubric.render(altered)], [example, example])
    chrf_score = scores["fields"][text_fields[0]]["chrf"]
    assert 0.5 < chrf_score < 1.0
    assert scores["fields"][text_fields[0]]["accuracy"] == 0.5


def test_probe_set_ships_and_validates(tmp_path: Path) -> None:
    probes = load_probes()
    kinds = {p["kind"] for p in probes}
    assert kinds == {"text", "clip"} and len([p for p in probes if p["kind"] == "text"]) >= 20
    assert len({p["id"] for p in probes}) == len(probes)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "kind": "clip", "question": "?", "measure": "loudness"}\n')
    with pytest.raises(CliptuneError, match="line 1"):
        load_probes(bad)
    bad.write_text("{oops\n")
    with pytest.raises(CliptuneError, match="not JSON"):
        load_probes(bad)


def test_clip_probe_answers_are_measured_from_the_frames(sample_dir: Path) -> None:
    truth = [json.loads(line) for line in (sample_dir / "ground_truth.jsonl").read_text().splitlines()]
    assert {t["night"] for t in truth} == {True, False}
    for item in truth:
        frames = sample_frames(sample_dir / "clips" / item["file"], num_frames=4)
        night = item["night"]  # the synthetic night camera is dark and grey (infrared)
        assert clip_answer("dark", frames) == ("yes" if night else "no")
        assert clip_answer("colour", frames) == ("no" if night else "yes")
    frames = {1: np.zeros((2, 8, 8, 3), np.uint8), 2: np.full((2, 8, 8, 3), 200, np.uint8)}
    items = probe_items(load_probes(), frames)
    dark = {i.clip_id: i.answers for i in items if i.id.startswith("clip-dark")}
    assert dark == {1: ("yes",), 2: ("no",)}
    assert len([i for i in items if i.kind == "text"]) == len([p for p in load_probes() if p["kind"] == "text"])


def test_answers_are_scored_by_their_start() -> None:
    assert is_correct("Yes, the scene is dark.", ("yes",))
    assert is_correct("12", ("12", "twelve")) and is_correct("Twelve.", ("12", "twelve"))
    assert not is_correct("120", ("12",)) and not is_correct("no", ("yes",))
    assert not is_correct("Maybe yes", ("yes",))
    items = probe_items([{"id": "a", "kind": "text", "question": "?", "answers": ["paris"]}], {})
    assert score_probes(items, ["Paris."])["accuracy"] == 1.0


def test_forgetting_warns_beyond_the_threshold() -> None:
    before = {"accuracy": 0.80, "text_accuracy": 0.9, "clip_accuracy": 0.7}
    quiet = forgetting_report(before, {"accuracy": 0.78, "text_accuracy": 0.9, "clip_accuracy": 0.66}, 0.05)
    assert quiet["warning"] is None and quiet["change"]["accuracy"] == pytest.approx(-0.02)
    loud = forgetting_report(before, {"accuracy": 0.60, "text_accuracy": 0.5, "clip_accuracy": 0.7}, 0.05)
    assert "fell by 20.0 points" in loud["warning"] and loud["change"]["text_accuracy"] == pytest.approx(-0.4)
    assert forgetting_report(before, {"accuracy": 0.95}, 0.05)["warning"] is None  # a gain is no warning
