"""Conformance: answers that fail the rubric's validation, do not round-trip render -> parse, or whose stored text
says something else than their fields are named; answers that fit are not."""

from __future__ import annotations

from pathlib import Path

import pytest

from curation.audit.conformance import answer_problems, check_conformance
from curation.errors import CliptuneError
from curation.records.annotations import add_annotation, add_review
from curation.records.store import Annotation, Clip, Review, User
from curation.records.users import add_user
from curation.rubric import load_rubric

RUBRICS = Path(__file__).resolve().parent.parent / "rubrics"
GOOD = {"event": "TAILGATING", "persons": 2, "badge_events": 1, "door": 14, "time": "02:14"}


def test_answer_problems_names_each_kind_of_failure() -> None:
    rubric = load_rubric(RUBRICS / "surveillance_alert.yaml")
    assert answer_problems(rubric, GOOD, rubric.render(GOOD)) == []
    assert answer_problems(rubric, {**GOOD, "persons": -1}, None) == ["persons: -1 is below the minimum 0"]
    wrong_text = answer_problems(rubric, GOOD, "TAILGATING — 3 persons, 1 badge event, Door 14, 02:14")
    assert len(wrong_text) == 1 and "says something else for persons" in wrong_text[0]
    unparsable = answer_problems(rubric, GOOD, "two people tailgated at door 14")
    assert len(unparsable) == 1 and "does not parse" in unparsable[0]
    assert answer_problems(rubric, None, "garbage")[0] == "no fields stored"


def test_free_text_that_breaks_the_template_fails_the_round_trip() -> None:
    rubric = load_rubric(RUBRICS / "telemedicine_note.yaml")
    example = rubric.examples[0].fields
    assert answer_problems(rubric, example, rubric.render(example)) == []
    text_field = next(f.name for f in rubric.fields if f.type == "text" and not f.multiline)
    broken = {**example, text_field: example[text_field] + "\nPLAN: something else"}
    problems = answer_problems(rubric, broken, None)
    assert problems and problems[0].startswith(f"{text_field}: ")


def _clip(session, n: int) -> None:
    session.add(Clip(root="/footage", path=f"cam/{n}.mp4", sha256=f"{n:064d}", source_sha256=f"{n:064d}",
                     duration_s=5.0, fps=10.0, width=160, height=120, n_frames=50, group_key="camera:cam"))


def test_project_answers_are_checked_against_the_current_rubric(project) -> None:
    with project.write() as session:
        for n in range(1, 5):
            _clip(session, n)
    add_user(project, "ana", "annotator", "a long password")
    add_user(project, "rev", "reviewer", "a long password")
    add_annotation(project, 1, "ana", fields=GOOD)  # fits
    ana = project.session().query(User).filter_by(name="ana").one().id
    rev = project.session().query(User).filter_by(name="rev").one().id
    with project.write() as session:
        # Written by an older tool or rubric, around add_annotation's validation: these must be reported.
        session.add(Annotation(clip_id=2, user_id=ana, rubric_version="0ld0ld0ld0ld", fields={**GOOD, "persons": -1},
                               output_text="TAILGATING — -1 persons, 1 badge event, Door 14, 02:14"))
        session.add(Annotation(clip_id=3, user_id=ana, rubric_version=project.rubric_version, fields=GOOD,
                               output_text="TAILGATING — 5 persons, 1 badge event, Door 14, 02:14"))
        session.add(Review(clip_id=4, reviewer_id=rev, rubric_version=project.rubric_version,
                           fields={**GOOD, "event": "LOITERING"}, output_text="LOITERING", reason="typed by hand"))
    add_review(project, 1, "rev", fields=GOOD, reason="agreed")
    result = check_conformance(project)
    by_clip = {(item["clip"], item["source"]): item for item in result.flagged}
    assert set(by_clip) == {(2, "annotation"), (3, "annotation"), (4, "review")}
    assert by_clip[2, "annotation"]["problems"][0].startswith("persons: ")
    assert "made under rubric 0ld0ld0ld0ld" in by_clip[2, "annotation"]["message"]
    assert "says something else for persons" in by_clip[3, "annotation"]["problems"][0]
    assert "LOITERING" in by_clip[4, "review"]["problems"][0] and by_clip[4, "review"]["user"] == "rev"
    assert result.scores == {2: 1.0, 3: 1.0, 4: 1.0}
    # Gold: clip 1 (adjudicated) and clip 3 (its fields are valid); both fit. Clip 4's review is invalid, so
    # resolve() leaves it out of the gold silently: this check is where it shows up.
    assert result.summary["checked"] == {"gold": 2, "review": 2, "annotation": 3}
    assert result.summary["failing"] == {"annotation": 2, "review": 1}


def test_conformance_needs_the_project() -> None:
    with pytest.raises(CliptuneError, match="pass the Project"):
        check_conformance("projects/lobby")  # type: ignore[arg-type]
