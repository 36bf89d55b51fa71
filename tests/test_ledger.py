"""The project-level split ledger: groups and near-duplicate clusters stay on one side, frozen clips never move."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from curation.dataset.ledger import current_split, split_groups, split_project
from curation.errors import CliptuneError
from curation.records.imports import import_annotations
from curation.records.sqlite_file import automatic_backups
from curation.records.store import Clip, Project, SplitEntry

RUBRICS = Path(__file__).resolve().parent.parent / "rubrics"
EVENTS = ("NO_ACTIVITY", "NORMAL_ENTRY", "TAILGATING", "INTRUSION")


def fields_for(event: str, door: int = 14) -> dict:
    persons = {"NO_ACTIVITY": 0, "NORMAL_ENTRY": 1, "TAILGATING": 2, "INTRUSION": 1}[event]
    badges = {"NO_ACTIVITY": 0, "NORMAL_ENTRY": 1, "TAILGATING": 1, "INTRUSION": 0}[event]
    return {"event": event, "persons": persons, "badge_events": badges, "door": door, "time": "02:14"}


def add_labelled(project: Project, specs: list[tuple[str, str | None]], start: int = 0, tmp: Path | None = None,
                 annotator: str = "gt") -> list[int]:
    """Clip rows (group key, event) and their gold answers imported as JSONL; event None = no answer."""
    with project.write() as session:
        rows = [Clip(root="/footage", path=f"clip{start + i:05d}.mp4", sha256=f"{start + i:064x}",
                     source_sha256=f"{start + i:064x}", duration_s=4.0, fps=10.0, width=160, height=120,
                     n_frames=40, group_key=group) for i, (group, _event) in enumerate(specs)]
        session.add_all(rows)
        session.flush()
        ids = [row.id for row in rows]
    lines = [json.dumps({"clip": clip_id, "annotator": annotator, "fields": fields_for(event), "seconds": 30})
             for clip_id, (_group, event) in zip(ids, specs, strict=True) if event is not None]
    if lines:
        path = (tmp or project.path) / f"labels-{start}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        assert import_annotations(project, path, create_users=True).imported == len(lines)
    return ids


def sides_by_group(project: Project, groups: dict[int, str]) -> dict[str, set[str]]:
    sides: dict[str, set[str]] = {}
    for clip_id, entry in current_split(project).items():
        sides.setdefault(groups[clip_id], set()).add(entry.split)
    return sides


def test_split_groups_unions_keys_and_clusters() -> None:
    groups = split_groups({1: "camera:A", 2: "camera:B", 3: "camera:C", 4: "camera:C", 5: "camera:D"},
                          {1: "dup7", 2: "dup7", 5: "dup9"})
    assert groups[1] == groups[2] == "camera:A (+1 linked)"
    assert groups[3] == groups[4] == "camera:C" and groups[5] == "camera:D"


def test_groups_and_near_duplicates_never_straddle(project: Project) -> None:
    rng = np.random.default_rng(1)
    specs = [(f"camera:cam{i % 12}", str(rng.choice(EVENTS, p=[0.4, 0.4, 0.1, 0.1]))) for i in range(96)]
    ids = add_labelled(project, specs)
    # Hand-made near-duplicate clusters linking clips of different cameras (a copy filed under another camera).
    extra = {ids[0]: "dup-a", ids[5]: "dup-a", ids[1]: "dup-b", ids[2]: "dup-b", ids[3]: "dup-b"}
    result = split_project(project, test_size=0.25, stratify="event", random_state=3, extra_groups=extra)
    report = result.report
    assert report["groups_straddling"] == 0 and report["train"] + report["test"] == 96
    linked = {result.groups[c] for c in (ids[0], ids[5])}
    assert len(linked) == 1 and "linked" in linked.pop()
    # cameras 0 and 5 are one group; cameras 1, 2, 3 another: each wholly on one side.
    for cameras in ({0, 5}, {1, 2, 3}):
        members = [c for c, (g, _e) in zip(ids, specs, strict=True) if int(g.removeprefix("camera:cam")) in cameras]
        assert len({result.assignment[c] for c in members}) == 1
    assert all(len(s) == 1 for s in sides_by_group(project, result.groups).values())
    assert report["groups"] == 12 - 1 - 2  # two links merged three cameras away
    # Rare classes seen in at least two groups reach both sides.
    for event in ("TAILGATING", "INTRUSION"):
        assert report["per_class"]["event"][event]["train"] > 0 and report["per_class"]["event"][event]["test"] > 0
    assert abs(report["test_share"] - 0.25) < 0.1


def test_only_gold_clips_are_split_and_the_rest_is_counted(project: Project, tmp_path: Path) -> None:
    ids = add_labelled(project, [(f"camera:c{i % 4}", EVENTS[i % 2]) for i in range(16)] + [("camera:c0", None)] * 2)
    # Two annotators disagree on two clips: those need review and stay out of the ledger.
    disputed = ids[:2]
    path = tmp_path / "other.jsonl"
    path.write_text("".join(json.dumps({"clip": c, "annotator": "ben", "fields": fields_for("INTRUSION", 3)}) + "\n"
                            for c in disputed))
    import_annotations(project, path, create_users=True)
    result = split_project(project, test_size=0.25)
    assert set(result.assignment) == set(ids[2:16])
    assert set(current_split(project)) == set(ids[2:16])
    assert result.report["left_out"] == {"needs_review": 2, "unlabelled": 2, "invalid_answers": 0}
    assert result.report["stratify"] == ["event"]  # the rubric's stratify field by default


def test_draft_is_replaced_and_frozen_rows_are_protected(project: Project) -> None:
    add_labelled(project, [(f"camera:c{i % 8}", EVENTS[i % 4]) for i in range(40)])
    split_project(project, test_size=0.2, random_state=0)
    split_project(project, test_size=0.3, random_state=5)
    with project.session() as session:
        rows = session.scalars(select(SplitEntry)).all()
    assert len(rows) == 40 and not any(r.frozen for r in rows)  # the second draft replaced the first
    frozen = split_project(project, test_size=0.2, random_state=0, freeze=True)
    assert all(entry.frozen for entry in current_split(project).values())
    assert frozen.report["frozen_now"] and frozen.report["all_frozen"]
    # Below the library, the database itself refuses to change a frozen entry.
    held_out = next(c for c, s in frozen.assignment.items() if s == "test")
    with sqlite3.connect(project.path / "cliptune.db") as connection:
        with pytest.raises(sqlite3.DatabaseError, match="frozen split entries never change"):
            connection.execute("UPDATE split_ledger SET split = 'train' WHERE clip_id = ?", (held_out,))
        with pytest.raises(sqlite3.DatabaseError, match="frozen split entries never change"):
            connection.execute("DELETE FROM split_ledger WHERE clip_id = ?", (held_out,))
    assert current_split(project)[held_out].split == "test"


@st.composite
def growth(draw):
    n_groups = draw(st.integers(2, 10))
    first = draw(st.lists(st.tuples(st.integers(0, n_groups - 1), st.sampled_from(EVENTS)), min_size=8, max_size=40))
    later = draw(st.lists(st.tuples(st.integers(0, n_groups + 6), st.sampled_from(EVENTS + (None,))),
                          min_size=1, max_size=40))
    return first, later, draw(st.floats(0.1, 0.5)), draw(st.integers(0, 1000)), draw(st.booleans())


@pytest.mark.slow  # 30 projects built, frozen, grown and split again: about 5 s
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(growth())
def test_frozen_clips_never_move_when_clips_are_added(case) -> None:
    first, later, test_size, seed, freeze_again = case
    with tempfile.TemporaryDirectory() as tmp:
        project = Project.init(Path(tmp) / "p", RUBRICS / "surveillance_alert.yaml")
        ids = add_labelled(project, [(f"camera:c{g}", e) for g, e in first], tmp=Path(tmp))
        try:
            before = split_project(project, test_size=test_size, random_state=seed, freeze=True)
        except CliptuneError as exc:  # e.g. one group only: nothing can be held out, and the split says so
            assert "held out nothing" in str(exc)
            assume(False)
        frozen = current_split(project)
        new_ids = add_labelled(project, [(f"camera:c{g}", e) for g, e in later], start=len(ids), tmp=Path(tmp))
        after = split_project(project, test_size=1 - test_size if freeze_again else test_size,
                              random_state=seed + 1, freeze=freeze_again)
        ledger = current_split(project)
        for clip_id, entry in frozen.items():
            assert ledger[clip_id] == entry, "a frozen clip moved or changed"
        group_of = {c: f"camera:c{g}" for c, (g, _e) in zip(ids + new_ids, first + later, strict=True)}
        frozen_side = {group_of[c]: e.split for c, e in frozen.items()}
        for clip_id in after.assignment:
            if group_of[clip_id] in frozen_side:  # a new clip of a frozen group joins that group's side
                assert after.assignment[clip_id] == frozen_side[group_of[clip_id]]
        assert after.report["groups_straddling"] == 0
        assert after.report["kept_frozen"] == len(before.assignment)
        unlabelled = [c for c, (_g, e) in zip(new_ids, later, strict=True) if e is None]
        assert not set(unlabelled) & set(ledger)


def test_bad_input_is_refused_and_loses_nothing(project: Project) -> None:
    with pytest.raises(CliptuneError, match="no clip has a gold answer"):
        split_project(project)
    # Each class lives in one camera: no held-out set can keep the class proportions; say so, write nothing.
    aligned = add_labelled(project, [(f"camera:solo{i % 4}", EVENTS[i % 4]) for i in range(24)])
    with pytest.raises(CliptuneError, match="held out nothing"):
        split_project(project, test_size=0.25)
    assert current_split(project) == {}
    unstratified = split_project(project, test_size=0.25, stratify="")
    assert unstratified.report["test"] == 6 and unstratified.report["stratify"] == []
    ids = aligned + add_labelled(project, [(f"camera:c{i % 4}", EVENTS[i % 3]) for i in range(24)], start=24)
    with pytest.raises(CliptuneError, match="test-size must be a share"):
        split_project(project, test_size=15)
    with pytest.raises(CliptuneError, match="no such field"):
        split_project(project, stratify="colour")
    first = split_project(project, test_size=0.25, freeze=True)
    ledger = current_split(project)
    train_clip = next(c for c in ids if first.assignment[c] == "train")
    test_clip = next(c for c in ids if first.assignment[c] == "test")
    # A near-duplicate cluster found after the freeze links a held-out clip with a train clip: refuse, move nothing.
    with pytest.raises(CliptuneError, match="frozen split leaks"):
        split_project(project, test_size=0.25, extra_groups={train_clip: "dup", test_clip: "dup"})
    assert current_split(project) == ledger


def test_several_stratify_fields(project: Project) -> None:
    rng = np.random.default_rng(4)
    add_labelled(project, [(f"camera:c{i % 20}", str(rng.choice(EVENTS))) for i in range(200)])
    report = split_project(project, test_size=0.2, stratify=["event", "persons"]).report
    assert set(report["per_class"]) == {"event", "persons"}
    assert report["max_proportion_deviation"] < 0.1 and report["groups_straddling"] == 0


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curation.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_split_json(project: Project) -> None:
    add_labelled(project, [(f"camera:c{i % 10}", EVENTS[i % 4]) for i in range(60)] + [("camera:c1", None)])
    result = run_cli("split", str(project.path), "--test-size", "0.15", "--stratify", "event", "--random-state", "0",
                     "--freeze", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["groups_straddling"] == 0 and report["train"] + report["test"] == 60
    assert set(report["per_class"]["event"]) == set(EVENTS) and report["left_out"]["unlabelled"] == 1
    assert isinstance(report["max_proportion_deviation"], float) and report["frozen_now"] is True
    bad = run_cli("split", str(project.path), "--test-size", "1.5")
    assert bad.returncode == 1 and bad.stderr.startswith("error: --test-size") and "Traceback" not in bad.stderr


def test_a_split_that_read_a_stale_ledger_writes_nothing(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    add_labelled(project, [(f"camera:c{i % 8}", EVENTS[i % 4]) for i in range(32)])
    split_project(project, test_size=0.25, freeze=True)
    ledger = current_split(project)
    # As if another process froze its split between this run's read of the ledger and its write.
    monkeypatch.setattr("curation.dataset.ledger.current_split", lambda _project: {})
    with pytest.raises(CliptuneError, match="another split froze clips"):
        split_project(project, test_size=0.5, random_state=9, freeze=True)
    monkeypatch.undo()
    assert current_split(project) == ledger
    with project.session() as session:
        assert len(session.scalars(select(SplitEntry)).all()) == 32


def test_a_split_over_an_earlier_one_backs_the_database_up_first(project: Project) -> None:
    rng = np.random.default_rng(4)
    add_labelled(project, [(f"camera:cam{i % 8}", str(rng.choice(EVENTS, p=[0.4, 0.4, 0.1, 0.1])))
                           for i in range(48)])
    backups = project.path / "backups"
    split_project(project, test_size=0.25, stratify="event", random_state=0)
    assert not backups.exists() or not list(backups.iterdir())  # the first split replaces nothing
    first = current_split(project)
    split_project(project, test_size=0.25, stratify="event", random_state=0, freeze=True)
    split_project(project, test_size=0.25, stratify="event", random_state=0, freeze=True)
    kept = [path.name for path in automatic_backups(backups)]  # oldest first
    assert len(kept) == 2 and kept[0].endswith("-split.db") and kept[1].endswith("-refreeze.db")
    # the backup taken before the freeze holds the draft split as it was
    with sqlite3.connect(backups / kept[0]) as connection:
        rows = dict(connection.execute("SELECT clip_id, split FROM split_ledger WHERE frozen = 0").fetchall())
    assert rows == {clip_id: entry.split for clip_id, entry in first.items()}
