"""`import_annotations` on hostile files, its refusal of unknown annotators, and its bounded write batches.

Every test runs on a real SQLite project; clips are rows without video (as in test_store). The concurrency test runs
the import and four annotators in separate processes and measures how long each annotator's save waits.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from test_resolve import add_clips

import curation.records.imports as imports
from curation.errors import CliptuneError
from curation.records.annotations import add_annotation, current_annotations
from curation.records.imports import MAX_SECONDS, MAX_TEXT_CHARS, import_annotations
from curation.records.store import Annotation, Clip, Event, Project
from curation.records.users import add_user, list_users

FIELDS = {"event": "TAILGATING", "persons": 2, "badge_events": 1, "door": 14, "time": "02:14"}
EVENTS = ["NO_ACTIVITY", "NORMAL_ENTRY", "TAILGATING", "INTRUSION"]


@pytest.fixture
def labelled(project: Project) -> tuple[Project, list[int]]:
    clips = add_clips(project, 12)
    for name in ("ana", "ben"):
        add_user(project, name, "annotator")  # no password: quick, and imports do not need one
    return project, clips


def line(clip: Any, annotator: str = "ana", **extra: Any) -> dict[str, Any]:
    return {"clip": clip, "annotator": annotator, "fields": FIELDS, **extra}


def write_lines(path: Path, lines: list[Any], *, end: bytes = b"\n", start: bytes = b"") -> Path:
    """Each item is a dict (written as JSON), a str or raw bytes (written as they are)."""
    def encode(item: Any) -> bytes:
        if isinstance(item, bytes):
            return item
        return (item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)).encode("utf-8")
    path.write_bytes(start + b"".join(encode(item) + end for item in lines))
    return path


def errors_by_line(report: imports.ImportReport) -> dict[int, str]:
    return {failure["line"]: failure["error"] for failure in report.failed}


# -- bytes and lines ---------------------------------------------------------------------------------------------
def test_a_line_that_is_not_utf8_fails_alone_with_its_column(labelled, tmp_path: Path) -> None:
    project, clips = labelled
    bad = b'{"clip": %d, "annotator": "ana", "status": "unclear", "comment": "caf\xc3\xa9 \xff"}' % clips[1]
    path = write_lines(tmp_path / "labels.jsonl", [line(clips[0]), bad, line(clips[2], "ben")])
    report = import_annotations(project, path)
    column = len(f'{{"clip": {clips[1]}, "annotator": "ana", "status": "unclear", "comment": "café ') + 1
    assert errors_by_line(report) == {2: f"not UTF-8 (byte 0xff at column {column}); save the file as UTF-8"}
    assert report.imported == 2
    assert {(a.clip_id, a.user) for a in current_annotations(project)} == {(clips[0], "ana"), (clips[2], "ben")}


def test_bom_crlf_and_line_separators_inside_strings(labelled, tmp_path: Path) -> None:
    project, clips = labelled
    # U+2028 and U+0085 are line breaks to str.splitlines, but plain characters inside a JSON string.
    comment = "too dark\u2028cannot count\x85sorry"
    lines = [line(clips[0]), {"clip": clips[1], "annotator": "ana", "status": "unclear", "comment": comment},
             "", "{broken", line(clips[2])]
    path = write_lines(tmp_path / "labels.jsonl", lines, end=b"\r\n", start=b"\xef\xbb\xbf")
    report = import_annotations(project, path)
    assert report.imported == 3 and list(errors_by_line(report)) == [4]
    assert [a.comment for a in current_annotations(project, clip_ids=[clips[1]])] == [comment]


def test_utf16_and_missing_files_are_one_clear_error(labelled, tmp_path: Path) -> None:
    project, clips = labelled
    utf16 = tmp_path / "labels16.jsonl"
    utf16.write_text(json.dumps(line(clips[0])) + "\n", encoding="utf-16")
    with pytest.raises(CliptuneError, match="UTF-16 or UTF-32 text; save the file as UTF-8"):
        import_annotations(project, utf16)
    with pytest.raises(CliptuneError, match="no such file"):
        import_annotations(project, tmp_path / "missing.jsonl")
    with pytest.raises(CliptuneError, match="is a folder"):
        import_annotations(project, tmp_path)


# -- numbers -----------------------------------------------------------------------------------------------------
def test_non_finite_and_huge_numbers_are_refused_naming_the_key(labelled, tmp_path: Path) -> None:
    project, clips = labelled
    c = clips[0]
    lines = [
        line(c, seconds=30),
        f'{{"clip": {c}, "annotator": "ben", "fields": {json.dumps(FIELDS)}, "seconds": NaN}}',
        f'{{"clip": {c}, "annotator": "ben", "fields": {json.dumps(FIELDS)}, "seconds": Infinity}}',
        f'{{"clip": {c}, "annotator": "ben", "fields": {json.dumps(FIELDS)}, "seconds": -Infinity}}',
        f'{{"clip": {c}, "annotator": "ben", "fields": {json.dumps(FIELDS)}, "seconds": 1e400}}',
        f'{{"clip": {c}, "annotator": "ben", "fields": {{"event": "TAILGATING", "persons": NaN}}}}',
        line(c, "ben", seconds=-1),
        line(c, "ben", seconds=MAX_SECONDS + 1),
        line(c, "ben", seconds=1e7),
        f'{{"clip": {c}, "annotator": "ben", "fields": {json.dumps(FIELDS)}, "seconds": {"9" * 5000}}}',
        f'{{"clip": {c}, "annotator": "ben", "fields": {{"door": 1, "tags": [1, 2, Infinity]}}}}',
        line(clips[1], "ben", seconds=MAX_SECONDS),
    ]
    report = import_annotations(project, write_lines(tmp_path / "labels.jsonl", lines))
    errors = errors_by_line(report)
    assert report.imported == 2 and sorted(errors) == list(range(2, 12))
    assert errors[2].startswith("'seconds': NaN is not a finite number")
    assert errors[3].startswith("'seconds': Infinity is not a finite number")
    assert errors[4].startswith("'seconds': -Infinity is not a finite number")
    assert errors[5].startswith("'seconds': 1e400 is not a finite number")
    assert errors[6].startswith("'fields.persons': NaN is not a finite number")
    for number in (7, 8, 9):
        assert errors[number].startswith("'seconds' must be a number of seconds from 0 to 86,400 (one day)")
    assert errors[10].startswith("'seconds': '99999") and "(5,000 characters) is too large" in errors[10]
    assert errors[11].startswith("'fields.tags[2]': Infinity is not a finite number")
    spent = sorted(a.seconds_spent for a in current_annotations(project))
    assert spent == [30.0, MAX_SECONDS] and all(math.isfinite(s) for s in spent)


# -- long values -------------------------------------------------------------------------------------------------
def test_long_values_are_cut_in_messages_and_long_text_is_refused(labelled, tmp_path: Path) -> None:
    project, clips = labelled
    huge = "a" * 10_485_760
    lines = [
        line(huge),
        {**line(clips[0]), huge: 1},
        line(clips[0], fields=dict(FIELDS, event="b" * (MAX_TEXT_CHARS + 1))),
        line(clips[0], fields=dict(FIELDS, event="c" * 5_000)),  # under the text limit: the rubric's own message
        {"clip": clips[0], "annotator": "ana", "output": "d" * 25_000},
        {"clip": clips[1], "annotator": "ana", "status": "unclear", "comment": "e" * (MAX_TEXT_CHARS + 1)},
        {"clip": clips[2], "annotator": "ana", "status": "unclear", "comment": "f" * MAX_TEXT_CHARS},
        {"clip": clips[3], "annotator": "ana", "fields": dict(FIELDS, persons=list(range(100_000)))},
    ]
    report = import_annotations(project, write_lines(tmp_path / "labels.jsonl", lines))
    errors = errors_by_line(report)
    assert report.imported == 1 and sorted(errors) == [1, 2, 3, 4, 5, 6, 8]
    assert all(len(message) <= 600 for message in errors.values()), {k: len(v) for k, v in errors.items()}
    assert errors[1] == f"clip '{'a' * 80}…' (10,485,760 characters) is not in this project"
    assert errors[2].startswith(f"unknown keys ['{'a' * 80}…' (10,485,760 characters)]")
    assert errors[3] == "field 'event' is 20,001 characters; at most 20,000 (shorten it)"
    assert errors[4] == f"event: '{'c' * 80}…' (5,000 characters) is not one of " \
                        "['NO_ACTIVITY', 'NORMAL_ENTRY', 'TAILGATING', 'INTRUSION']"
    assert errors[5] == "'output' is 25,000 characters; at most 20,000 (shorten it)"
    assert errors[6] == "'comment' is 20,001 characters; at most 20,000 (shorten it)"
    assert "characters in all] … " in errors[8] and errors[8].startswith("persons: [0, 1, 2")
    assert [len(a.comment) for a in current_annotations(project)] == [MAX_TEXT_CHARS]


def test_escaped_lone_surrogates_and_deep_nesting_fail_their_line(labelled, tmp_path: Path) -> None:
    project, clips = labelled
    unclear = '{{"clip": {}, "annotator": "ana", "status": "unclear", "comment": "{}"}}'
    lines = [unclear.format(clips[0], "bad \\ud800 here"), unclear.format(clips[1], "ok \\ud83d\\ude00"),
             f'{{"clip": {clips[2]}, "annotator": "ana", "fields": {"[" * 100_000 + "]" * 100_000}}}']
    report = import_annotations(project, write_lines(tmp_path / "labels.jsonl", lines))
    errors = errors_by_line(report)
    assert errors[1].startswith("'comment': an escaped lone surrogate")
    assert errors[3] == "not valid JSON for this import (nested too deeply)"
    assert [a.comment for a in current_annotations(project)] == ["ok \U0001f600"]


# -- annotators --------------------------------------------------------------------------------------------------
def test_unknown_annotators_are_refused_unless_asked_to_create_them(labelled, tmp_path: Path) -> None:
    project, clips = labelled
    lines = [line(clips[0], "anna"), line(clips[1], "ana"), line(clips[2], "anna"), line(clips[3], "zed")]
    path = write_lines(tmp_path / "labels.jsonl", lines)
    report = import_annotations(project, path)
    errors = errors_by_line(report)
    assert report.imported == 1 and report.users_created == [] and sorted(errors) == [1, 3, 4]
    assert errors[1] == ("annotator 'anna' is not in this project (did you mean 'ana'?); known: ana, ben. "
                         "Add them with `cliptune users add`, or pass --create-users (create_users=True) to make "
                         "annotator accounts without a password")
    assert errors[3] == "annotator 'anna' is not in this project (see line 1)"
    assert errors[4].startswith("annotator 'zed' is not in this project; known: ana, ben.")
    assert sorted(u.name for u in list_users(project)) == ["ana", "ben"]

    again = import_annotations(project, path, create_users=True)
    assert again.users_created == ["anna", "zed"] and again.imported == 3 and again.unchanged == 1
    assert {u.name: (u.role, u.password_hash) for u in list_users(project)}["zed"] == ("annotator", None)


def test_a_long_list_of_known_annotators_is_cut(labelled, tmp_path: Path) -> None:
    project, clips = labelled
    for i in range(30):
        add_user(project, f"person{i:02d}", "annotator")
    report = import_annotations(project, write_lines(tmp_path / "labels.jsonl", [line(clips[0], "nobody")]))
    assert "known: ana, ben, person00, " in report.failed[0]["error"]
    assert "person17 … and 12 more. Add them" in report.failed[0]["error"]


def test_cli_refuses_unknown_annotators_unless_create_users(labelled, tmp_path: Path) -> None:
    project, clips = labelled
    path = write_lines(tmp_path / "labels.jsonl", [line(clips[0], "newcomer"), line(clips[1], "ana")])
    command = [sys.executable, "-m", "curation.cli", "import-annotations", str(project.path), str(path), "--json"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["imported"] == 1 and report["failed"][0]["line"] == 1
    assert "--create-users" in report["failed"][0]["error"]
    second = subprocess.run([*command, "--create-users"], capture_output=True, text=True, timeout=120)
    report = json.loads(second.stdout)
    assert report["users_created"] == ["newcomer"] and report["imported"] == 1 and report["unchanged"] == 1


def test_batching_parameters_are_checked(labelled, tmp_path: Path) -> None:
    project, clips = labelled
    path = write_lines(tmp_path / "labels.jsonl", [line(clips[0])])
    for kwargs in ({"batch_rows": 0}, {"batch_rows": 1.5}, {"batch_seconds": 0}, {"batch_seconds": math.inf},
                   {"create_users": "yes"}):
        with pytest.raises(CliptuneError, match="must be"):
            import_annotations(project, path, **kwargs)
    assert current_annotations(project) == []


# -- batches -----------------------------------------------------------------------------------------------------
def test_batches_compare_with_answers_written_between_them(labelled, tmp_path: Path, monkeypatch) -> None:
    project, clips = labelled
    other = dict(FIELDS, persons=3)
    lines = [line(clips[0], fields=other), line(clips[1]), line(clips[2]), line(clips[1])]
    real_write_batch = imports._write_batch
    calls = []

    def write_batch_then_annotate(*args: Any) -> tuple[int, int, float]:
        # Real batches; after the first, ana saves answers in the app as she would during a long import.
        result = real_write_batch(*args)
        if not calls:
            add_annotation(project, clips[1], "ana", fields=FIELDS)  # the same answer the file has next
            add_annotation(project, clips[2], "ana", fields=other)  # a different one
        calls.append(result)
        return result

    monkeypatch.setattr(imports, "_write_batch", write_batch_then_annotate)
    report = import_annotations(project, write_lines(tmp_path / "labels.jsonl", lines), batch_rows=1,
                                batch_seconds=None)
    # Batch 2 finds clip 1's line equal to the answer saved meanwhile, then writes clip 2 (which now differs).
    assert [c[:2] for c in calls] == [(1, 0), (1, 1), (0, 1)]
    assert (report.imported, report.unchanged) == (2, 2)
    rows = current_annotations(project, history=True)
    assert [(a.clip_id, a.source) for a in rows] == [(clips[0], "import"), (clips[1], "ui"), (clips[2], "ui"),
                                                     (clips[2], "import")]
    assert all(a.created_at is not None and a.rubric_version == project.rubric_version for a in rows)
    with project.session() as session:
        event = session.scalars(select(Event).where(Event.action == "import_annotations")).one()
    assert event.detail["batches"] == 3 and event.detail["imported"] == 2


def _import_in_process(project_path: str, path: str, kwargs: dict[str, Any]) -> None:
    report = import_annotations(Project.open(project_path), path, **kwargs)
    assert not report.failed, report.failed[:3]


def labels_file(path: Path, clips: list[int], names: list[str]) -> Path:
    return write_lines(path, [{"clip": c, "annotator": n, "fields": dict(FIELDS, event=EVENTS[(c + k) % 4]),
                               "seconds": 20 + k} for c in clips for k, n in enumerate(names)])


def count_imported(project: Project) -> int:
    with project.session() as session:
        return session.scalar(select(func.count()).select_from(Annotation).where(Annotation.source == "import"))


def test_a_killed_import_keeps_whole_batches_and_a_rerun_adds_the_rest(project: Project, tmp_path: Path) -> None:
    clips = add_clips(project, 10_000)
    add_user(project, "ana", "annotator")
    add_user(project, "ben", "annotator")
    path = labels_file(tmp_path / "labels.jsonl", clips, ["ana", "ben"])
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=_import_in_process,
                            args=(str(project.path), str(path), {"batch_rows": 200, "batch_seconds": None}))
    child.start()
    deadline = time.monotonic() + 120
    while count_imported(project) == 0 and child.is_alive() and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=30)
    written = count_imported(project)
    assert child.exitcode == -signal.SIGKILL and 0 < written < 20_000, (child.exitcode, written)
    assert written % 200 == 0  # batches are all or nothing

    report = import_annotations(project, path)
    assert (report.imported, report.unchanged, report.failed) == (20_000 - written, written, [])
    assert count_imported(project) == len(current_annotations(project)) == 20_000
    rerun = import_annotations(project, path)
    assert (rerun.imported, rerun.unchanged) == (0, 20_000)


def _annotate_every(project_path: str, name: str, clips: list[int], period: float, ready: Any, stop: Any,
                    results: Any) -> None:
    project = Project.open(project_path)
    add_annotation(project, clips[0], name, fields=FIELDS)  # warm-up: imports, rubric, connection
    ready.set()
    waits, ids, errors = [], [], []
    index = 1
    while not stop.is_set():
        started = time.perf_counter()
        try:
            ids.append(add_annotation(project, clips[index % len(clips)], name,
                                      fields=dict(FIELDS, persons=index % 7), seconds_spent=12.0))
        except Exception as exc:  # noqa: BLE001 - any failure is what the test counts
            errors.append(f"{type(exc).__name__}: {exc}")
        waits.append(time.perf_counter() - started)
        index += 1
        time.sleep(max(0.0, period - (time.perf_counter() - started)))
    results.put({"name": name, "waits": waits, "ids": ids, "errors": errors})


def measure_waits_during_import(project: Project, path: Path, import_kwargs: dict[str, Any], *, writers: int = 4,
                                period: float = 0.2, target: Any = _import_in_process) -> dict[str, Any]:
    """Run the import in one process while ``writers`` processes save an answer every ``period`` seconds."""
    context = multiprocessing.get_context("spawn")
    ready = [context.Event() for _ in range(writers)]
    stop, results = context.Event(), context.Queue()
    names = [f"writer{i}" for i in range(writers)]
    for name in names:
        add_user(project, name, "annotator")
    with project.session() as session:
        clips = list(session.scalars(select(Clip.id).order_by(Clip.id).limit(50)))
    procs = [context.Process(target=_annotate_every, args=(str(project.path), name, clips, period, r, stop, results))
             for name, r in zip(names, ready, strict=True)]
    for proc in procs:
        proc.start()
    for r in ready:
        assert r.wait(timeout=120)
    started = time.perf_counter()
    importer = context.Process(target=target, args=(str(project.path), str(path), import_kwargs))
    importer.start()
    importer.join(timeout=600)
    import_seconds = time.perf_counter() - started
    time.sleep(2 * period)
    stop.set()
    outcomes = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    waits = [w for o in outcomes for w in o["waits"]]
    with project.session() as session:
        first, last = session.execute(select(func.min(Annotation.id), func.max(Annotation.id))
                                      .where(Annotation.source == "import")).one()
    return {"importer_exit": importer.exitcode, "import_seconds": import_seconds, "calls": len(waits),
            "errors": [e for o in outcomes for e in o["errors"]], "max": max(waits),
            "median": statistics.median(waits),
            "interleaved": sum(first < i < last for o in outcomes for i in o["ids"])}


def test_annotators_wait_under_a_second_during_a_large_import(project: Project, tmp_path: Path) -> None:
    clips = add_clips(project, 10_000)
    for name in ("ana", "ben", "cho"):
        add_user(project, name, "annotator")
    path = labels_file(tmp_path / "labels.jsonl", clips, ["ana", "ben", "cho"])  # 30,000 lines
    result = measure_waits_during_import(project, path, {})
    print(f"\nwaits during a 30,000-line import: {result}")
    assert result["importer_exit"] == 0 and result["errors"] == []
    assert count_imported(project) == 30_000
    # The annotators really wrote while the import was writing, between its batches.
    assert result["interleaved"] >= 1, result
    assert result["max"] <= 1.0, result
