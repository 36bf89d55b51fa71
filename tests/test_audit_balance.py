"""Balance: class counts per stratifying field; rare classes are flagged with how many more clips they need, absent
classes and classes seen in one group only too."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from curation.audit.balance import check_balance, class_findings
from curation.audit.result import AuditInputs
from curation.errors import CliptuneError
from curation.rubric import load_rubric

RUBRIC = Path(__file__).resolve().parent.parent / "rubrics" / "surveillance_alert.yaml"


def inputs(counts: dict[str, int], groups_of: dict[str, list[str]] | None = None) -> AuditInputs:
    events = [event for event, n in counts.items() for _ in range(n)]
    ids = pd.Index(range(1, len(events) + 1), name="clip_id")
    groups = []
    seen: dict[str, int] = {}
    for event in events:
        options = (groups_of or {}).get(event, ["g1", "g2", "g3"])
        groups.append(options[seen.get(event, 0) % len(options)])
        seen[event] = seen.get(event, 0) + 1
    features = pd.DataFrame({"group": groups}, index=ids)
    return AuditInputs(rubric=load_rubric(RUBRIC), labels=pd.DataFrame({"event": events}, index=ids),
                       features=features)


def test_rare_absent_and_one_group_classes_are_flagged_with_what_to_do() -> None:
    data = inputs({"NO_ACTIVITY": 40, "NORMAL_ENTRY": 30, "TAILGATING": 9}, groups_of={"TAILGATING": ["cam:b"]})
    result = check_balance(data)
    assert result.summary["min_count"] == 25  # 5 held out at a 20 % held-out share
    found = {(f["kind"], f["value"]): f for f in result.flagged}
    assert set(found) == {("rare", "TAILGATING"), ("one_group", "TAILGATING"), ("absent", "INTRUSION")}
    assert found["rare", "TAILGATING"]["needed"] == 16
    assert "label at least 16 more" in found["rare", "TAILGATING"]["message"]
    assert "(a rare event in the rubric)" in found["rare", "TAILGATING"]["message"]
    assert "one group (cam:b)" in found["one_group", "TAILGATING"]["message"]
    assert result.details["fields"]["event"]["counts"] == {"NO_ACTIVITY": 40, "NORMAL_ENTRY": 30, "TAILGATING": 9,
                                                          "INTRUSION": 0}
    assert result.details["fields"]["event"]["imbalance"] == pytest.approx(40 / 9, abs=1e-3)
    # Clips of the rare class score by how far below the minimum it is; the others 0.
    assert result.scores[79] == pytest.approx(1 - 9 / 25) and result.scores[1] == 0.0


def test_the_minimum_follows_the_held_out_share_and_can_be_set() -> None:
    data = inputs({"NO_ACTIVITY": 12, "NORMAL_ENTRY": 12, "TAILGATING": 12, "INTRUSION": 12})
    assert check_balance(data, test_size=0.5, min_test=5).flagged == []  # 10 needed
    assert len(check_balance(data, min_count=13).flagged) == 4
    assert check_balance(data, test_size=0.1, min_test=3).summary["min_count"] == 30


def test_class_findings_is_a_pure_function_of_counts_and_groups() -> None:
    findings = class_findings({"a": 30, "b": 2}, {"a": {"x", "y"}, "b": {"x", "y"}}, field="f", choices=["a", "b"],
                              rare=[], min_count=25, test_size=0.2, min_test=5)
    assert [(f["kind"], f["value"], f["needed"]) for f in findings] == [("rare", "b", 23)]


def test_bad_settings_are_clear_errors() -> None:
    data = inputs({"NO_ACTIVITY": 5})
    with pytest.raises(CliptuneError, match="test_size"):
        check_balance(data, test_size=1.5)
    with pytest.raises(CliptuneError, match="not in the rubric"):
        check_balance(data, fields=["colour"])


def test_groups_come_from_the_store_when_no_features_were_extracted(project) -> None:
    """The audit's balance-only run reads no pictures: the group of each clip still comes from the store."""
    from curation.records.annotations import add_annotation
    from curation.records.store import Clip
    from curation.records.users import add_user

    with project.write() as session:
        for n in range(1, 7):
            session.add(Clip(root="/footage", path=f"{n}.mp4", sha256=f"{n:064d}", source_sha256=f"{n:064d}",
                             duration_s=5.0, fps=10.0, width=160, height=120, n_frames=50,
                             group_key="camera:CAM-9" if n == 6 else f"camera:CAM-{n % 2}"))
    add_user(project, "ana", "annotator", "a long password")
    for n in range(1, 7):
        event = "INTRUSION" if n == 6 else "NO_ACTIVITY"
        add_annotation(project, n, "ana", fields={"event": event, "persons": 1 if n == 6 else 0, "badge_events": 0,
                                                  "door": 3, "time": "12:00"})
    for source in (project, AuditInputs.from_project(project, features=False)):
        result = check_balance(source, min_count=2)
        assert [(f["kind"], f["value"], f.get("groups")) for f in result.flagged] == [
            ("absent", "NORMAL_ENTRY", None), ("absent", "TAILGATING", None), ("rare", "INTRUSION", None),
            ("one_group", "INTRUSION", ["camera:CAM-9"])]
        assert result.details["fields"]["event"]["groups"]["NO_ACTIVITY"] == 2
