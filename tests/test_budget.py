"""The labelling budget: the rule of thumb when nothing is measured, the annotators' median pace when it is."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from curation.errors import CliptuneError
from curation.records.annotations import add_annotation
from curation.records.store import Clip, Project
from curation.records.users import add_user
from curation.team.budget import budget_forecast, measured_pace

BASE = {"event": "NORMAL_ENTRY", "persons": 1, "badge_events": 1, "door": 14, "time": "02:14"}


def add_clips(project: Project, n: int) -> list[int]:
    with project.write() as session:
        rows = [Clip(root="/footage", path=f"c{i}.mp4", sha256=f"{i:064x}", source_sha256=f"{i:064x}",
                     duration_s=4.0, fps=10.0, width=160, height=120, n_frames=40, group_key=f"camera:{i % 3}")
                for i in range(n)]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def test_rule_of_thumb_when_nothing_is_measured(project: Project) -> None:
    forecast = budget_forecast(project, target=1000)
    assert forecast["pace"] == {"seconds_per_clip": 180.0, "clips_per_hour": 20.0, "source": "rule_of_thumb",
                                "annotators": {}, "annotations_measured": 0}
    # 1,200 labels (20 % overlap by 2), 120 second labels for held-out clips, 150 reviews, at 3 minutes each.
    assert forecast["label"]["hours"] == 60.0 and forecast["hold_out"]["hours"] == 6.0
    assert forecast["review"]["hours"] == 7.5 and forecast["assumptions"]["review_share_source"] == "default"
    assert forecast["total_hours"] == 73.5 == forecast["remaining_hours"]


def test_measured_median_pace_and_review_share(project: Project) -> None:
    clips = add_clips(project, 6)
    for name in ("ana", "ben", "cho"):
        add_user(project, name, "annotator", f"password-{name}")
    seconds = {"ana": [30, 40, 50], "ben": [100, 120], "cho": [60]}
    for name, values in seconds.items():
        for clip, value in zip(clips, values, strict=False):
            add_annotation(project, clip, name, fields=BASE, seconds_spent=value)
    add_annotation(project, clips[0], "ana", fields=BASE, seconds_spent=900)  # an edit: the latest row counts
    add_annotation(project, clips[3], "ana", fields=dict(BASE, door=3), seconds_spent=None)  # not measured
    pace = measured_pace(project)
    assert pace["annotators"] == {"ana": 50.0, "ben": 110.0, "cho": 60.0}  # ana: 900, 40, 50 -> 50
    assert pace["seconds_per_clip"] == 60.0 and pace["clips_per_hour"] == 60.0 and pace["source"] == "measured"
    forecast = budget_forecast(project, target=600, overlap=0.5, per_clip=3, test_size=0.1)
    # Every answered clip resolves (unanimous or single): nothing needs review yet.
    assert forecast["assumptions"]["review_share"] == 0.0 and forecast["assumptions"]["review_share_source"] == \
        "measured"
    assert forecast["label"]["annotations"] == 1200.0 and forecast["label"]["hours"] == 20.0  # 600 * 2 labels/min
    assert forecast["hold_out"]["hours"] == 0.5  # 60 held out, half already overlapped: 30 labels
    add_annotation(project, clips[0], "ben", fields=dict(BASE, persons=2), seconds_spent=100)
    disputed = budget_forecast(project, target=600)
    assert disputed["assumptions"]["review_share"] == 0.25  # 1 of 4 answered clips needs review
    assert disputed["review"]["hours"] == 2.5 and disputed["done"]["gold_clips"] == 3


def test_bad_input_is_refused(project: Project) -> None:
    with pytest.raises(CliptuneError, match="--target must be a whole number"):
        budget_forecast(project, target=0)
    with pytest.raises(CliptuneError, match="--overlap must be a share"):
        budget_forecast(project, overlap=1.5)
    with pytest.raises(CliptuneError, match="--per-clip"):
        budget_forecast(project, per_clip=1)
    with pytest.raises(CliptuneError, match="--test-size"):
        budget_forecast(project, test_size=1.0)


def test_cli_budget_json(project: Project) -> None:
    result = subprocess.run([sys.executable, "-m", "curation.cli", "budget", str(project.path), "--target", "1000",
                             "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["total_hours"] == 73.5 and report["pace"]["source"] == "rule_of_thumb"
    bad = subprocess.run([sys.executable, "-m", "curation.cli", "budget", str(project.path), "--target", "-5"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("error: --target")
