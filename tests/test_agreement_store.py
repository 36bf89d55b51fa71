"""The agreement report from stored per-clip rows (curation.review.agreement_store) equals the report computed from
every answer with nothing stored, step after step, and only changed clips are computed again."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from test_resolution_store import _random_fields
from test_resolve import add_clips

from curation.records.annotations import add_annotation, add_review
from curation.records.store import Project
from curation.records.users import add_user
from curation.review.agreement_store import refresh_agreement
from curation.review.field_agreement import agreement_report, agreement_report_from_answers

RUBRICS = Path(__file__).resolve().parent.parent / "rubrics"
PHRASES = ["swollen right ankle after a fall", "swollen ankle after fall", "review of blood pressure",
           "headache for three days", "Headache for 3 days"]


def _note(rng: random.Random) -> dict:
    return {"visit_type": rng.choice(["first visit", "follow-up"]), "complaint": rng.choice(PHRASES),
            "history": rng.choice(PHRASES), "observations": rng.choice(PHRASES), "plan": rng.choice(PHRASES),
            "urgency": rng.choice(["routine", "routine", "soon", "urgent"]), "pain_score": rng.choice([2, 3, 3, 7])}


@pytest.mark.parametrize("rubric, make", [("surveillance_alert", _random_fields), ("telemedicine_note", _note)])
def test_stored_report_equals_the_report_from_every_answer(tmp_path: Path, rubric: str, make) -> None:
    project = Project.init(tmp_path / "p", RUBRICS / f"{rubric}.yaml")
    clips = add_clips(project, 36)
    for name in ("ana", "ben", "cho"):
        add_user(project, name, "annotator", f"password-{name}")
    add_user(project, "rev", "reviewer", "password-rev")
    rng = random.Random(11)
    for step in range(5):
        for _ in range(30):
            clip, user = rng.choice(clips), rng.choice(["ana", "ben", "cho"])
            if rng.random() < 0.1:
                add_annotation(project, clip, user, status="skipped", seconds_spent=4.0)
            else:
                add_annotation(project, clip, user, fields=make(rng), seconds_spent=rng.uniform(10, 80))
        add_review(project, rng.choice(clips), "rev", fields=make(rng), reason="watched it twice")
        stored = agreement_report(project, n_boot=200, random_state=step)
        assert stored == agreement_report_from_answers(project, n_boot=200, random_state=step)
        assert agreement_report(project, n_boot=200, random_state=step) == stored  # the kept report, read back
        assert stored["clips_answered"] > 0 and set(stored["annotators"]) == {"ana", "ben", "cho"}
    assert refresh_agreement(project) == 0
    add_annotation(project, clips[0], "ana", fields=make(rng))
    assert refresh_agreement(project) == 1
