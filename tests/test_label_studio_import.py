"""Offline import of Label Studio JSON exports: the mapping, per-task errors, idempotence, new versions."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from conftest import RUBRICS

from annotate_ui.label_studio.bridge import import_export
from annotate_ui.label_studio.config import result_from_fields
from curation.cli.main import main
from curation.errors import CliptuneError
from curation.media.ingest import ingest
from curation.records.annotations import add_annotation, current_annotations
from curation.records.store import Clip, Project
from curation.records.users import add_user, get_user


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with 3 real clips (ingested, with proxies), made once and copied per test."""
    from curation.media.synthetic import generate_sample

    base = tmp_path_factory.mktemp("ls-import")
    generate_sample(base / "sample", n_clips=3, random_state=3)
    project = Project.init(base / "project", RUBRICS / "surveillance_alert.yaml")
    assert ingest(project, [base / "sample" / "clips"], proxy_height=96, workers=1).added == 3
    project.engine.dispose()
    return base / "project"


@pytest.fixture
def project(ingested: Path, tmp_path: Path) -> Project:
    shutil.copytree(ingested, tmp_path / "project")
    return Project.open(tmp_path / "project")


def _clips(project: Project) -> list[Clip]:
    with project.session() as session:
        return list(session.query(Clip).order_by(Clip.id))


FIELDS = [
    {"event": "TAILGATING", "persons": 2, "badge_events": 1, "door": 14, "time": "02:14"},
    {"event": "NO_ACTIVITY", "persons": 0, "badge_events": 0, "door": 3, "time": "13:05"},
    {"event": "INTRUSION", "persons": 1, "badge_events": 0, "door": 27, "time": "23:59"},
]


def _annotation(ann_id, email, fields, *, rubric, lead_time=30.0, cancelled=False, updated="2026-11-20T10:00:00Z"):
    return {"id": ann_id, "completed_by": {"id": ann_id * 10, "email": email, "first_name": "", "last_name": ""},
            "result": [] if cancelled else result_from_fields(rubric, fields), "was_cancelled": cancelled,
            "lead_time": lead_time, "created_at": updated, "updated_at": updated, "task": 0, "project": 7}


def _export(project: Project) -> list[dict]:
    """A Label Studio JSON export as cliptune pushes it: 3 tasks, 2 annotators, one skip."""
    rubric, clips = project.rubric, _clips(project)
    tasks = []
    for index, clip in enumerate(clips):
        data = {"video": f"/data/local-files/?d={clip.proxy_path.removeprefix('media/')}", "fps": clip.fps,
                "clip_id": clip.id, "cliptune_sha256": clip.sha256}
        annotations = [_annotation(100 + index, "ana@lobby.test", FIELDS[index], rubric=rubric, lead_time=20.0 + index)]
        if index < 2:
            annotations.append(_annotation(200 + index, "bo@lobby.test", FIELDS[index], rubric=rubric,
                                           cancelled=index == 1, lead_time=4.5))
        tasks.append({"id": 50 + index, "data": data, "annotations": annotations, "project": 7})
    return tasks


def _write(tmp_path: Path, tasks) -> Path:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    return path


def test_import_maps_who_how_long_and_skips(project, tmp_path):
    report = import_export(project, _write(tmp_path, _export(project)))
    assert (report.tasks, report.imported, report.skipped, report.unchanged, report.failed) == (3, 5, 1, 0, [])
    assert sorted(report.users_created) == ["ana@lobby.test", "bo@lobby.test"]
    assert get_user(project, "bo@lobby.test").role == "annotator"
    clips = _clips(project)
    rows = {(r.clip_id, r.user): r for r in current_annotations(project)}
    assert len(rows) == 5
    first = rows[(clips[0].id, "ana@lobby.test")]
    assert (first.fields, first.seconds_spent, first.source, first.status) == (FIELDS[0], 20.0, "label_studio",
                                                                               "submitted")
    assert first.output_text == "TAILGATING — 2 persons, 1 badge event, Door 14, 02:14"
    skipped = rows[(clips[1].id, "bo@lobby.test")]
    assert (skipped.status, skipped.fields, skipped.seconds_spent) == ("skipped", None, 4.5)


def test_importing_twice_adds_nothing_and_an_update_is_a_new_version(project, tmp_path):
    tasks = _export(project)
    import_export(project, _write(tmp_path, tasks))
    again = import_export(project, _write(tmp_path, tasks))
    assert (again.imported, again.unchanged, again.users_created) == (0, 5, [])
    assert len(current_annotations(project, history=True)) == 5

    updated = copy.deepcopy(tasks)
    changed = dict(FIELDS[0], persons=3, event="TAILGATING")
    ann = updated[0]["annotations"][0]
    ann["result"] = result_from_fields(project.rubric, changed)
    ann["updated_at"], ann["lead_time"] = "2026-11-21T09:30:00.123456+00:00", 45.0
    # A re-save in Label Studio that changed nothing (new updated_at, same answer) is not a new version.
    updated[1]["annotations"][0]["updated_at"] = "2026-11-21T09:31:00Z"
    report = import_export(project, _write(tmp_path, updated))
    assert (report.imported, report.unchanged) == (1, 4)
    clip = _clips(project)[0].id
    history = current_annotations(project, clip_ids=[clip], user="ana@lobby.test", history=True)
    assert [h.fields["persons"] for h in history] == [2, 3]  # append-only: the first version is kept
    assert current_annotations(project, clip_ids=[clip], user="ana@lobby.test")[0].seconds_spent == 45.0
    assert import_export(project, _write(tmp_path, updated)).imported == 0


def test_a_malformed_export_reports_each_bad_task_and_imports_the_good_ones(project, tmp_path):
    good = _export(project)
    rubric = project.rubric
    missing_data = {"id": 60, "annotations": good[0]["annotations"]}
    unknown_choice = copy.deepcopy(good[1])
    unknown_choice["id"] = 61
    unknown_choice["annotations"][0]["result"][0]["value"]["choices"] = ["FIRE"]
    wrong_types = copy.deepcopy(good[2])
    wrong_types["id"] = 62
    wrong_types["annotations"][0]["result"][1]["value"]["number"] = "two"
    wrong_types["annotations"][0]["lead_time"] = "fast"
    missing_fields = copy.deepcopy(good[0])
    missing_fields["id"] = 63
    missing_fields["annotations"][0]["result"] = missing_fields["annotations"][0]["result"][:2]
    del missing_fields["annotations"][1]["completed_by"]
    unknown_clip = {"id": 64, "data": {"video": "/data/local-files/?d=elsewhere/other.mp4"},
                    "annotations": [_annotation(300, "cy@lobby.test", FIELDS[0], rubric=rubric)]}
    bad_user = copy.deepcopy(good[0])
    bad_user["id"] = 65
    bad_user["annotations"][0]["completed_by"] = 42
    tasks = [good[0], missing_data, unknown_choice, wrong_types, "not a task", missing_fields, unknown_clip,
             bad_user, good[2]]
    report = import_export(project, _write(tmp_path, tasks))

    # A task that cannot be read fails as a whole; a bad answer fails alone, by task and annotation id.
    errors = {(str(f["task"]), f.get("annotation")): f["error"] for f in report.failed}
    assert set(errors) == {("60", None), ("61", 101), ("62", 102), ("#4", None), ("63", 100), ("63", 200),
                           ("64", None), ("65", 100)}
    assert "missing 'data'" in errors[("60", None)]
    assert errors[("61", 101)].startswith("event: 'FIRE' is not one of")
    assert "persons: 'number' must be a number" in errors[("62", 102)]
    assert "'lead_time' must be a number" in errors[("62", 102)]
    assert "a task must be a JSON object" in errors[("#4", None)]
    assert "badge_events: required" in errors[("63", 100)] and "missing 'completed_by'" in errors[("63", 200)]
    assert "cannot tell which clip" in errors[("64", None)]
    assert "bare user id 42" in errors[("65", 100)]
    # The good tasks (both annotations of the first, one of the last) are in, and so are the good answers on
    # tasks with a bad one: bo's skip on 61; bo's answer on 65 is the one of the first task (same annotation).
    assert (report.tasks, report.imported, report.skipped, report.unchanged) == (9, 4, 1, 1)
    stored = {(r.clip_id, r.user) for r in current_annotations(project, history=True)}
    clips = _clips(project)
    assert stored == {(clips[0].id, "ana@lobby.test"), (clips[0].id, "bo@lobby.test"), (clips[1].id, "bo@lobby.test"),
                      (clips[2].id, "ana@lobby.test")}
    assert get_user(project, "cy@lobby.test") is None


def test_bare_user_ids_and_other_names_can_be_mapped_to_existing_users(project, tmp_path):
    add_user(project, "ana", "annotator", "long password")
    tasks = _export(project)[:1]
    tasks[0]["annotations"][0]["completed_by"] = 42
    report = import_export(project, _write(tmp_path, tasks), user_map={"42": "ana", "bo@lobby.test": "bo"})
    assert report.failed == [] and report.users_created == ["bo"]
    assert {r.user for r in current_annotations(project)} == {"ana", "bo"}
    with pytest.raises(CliptuneError, match="not valid user names"):
        import_export(project, _write(tmp_path, tasks), user_map={"42": "not a name"})


def test_tasks_from_a_label_studio_project_not_made_by_cliptune_match_clips_by_file_name(project, tmp_path):
    clip = _clips(project)[1]
    task = {"id": 9, "data": {"video": f"https://files.example/lobby/{clip.path.split('/')[-1]}"},
            "annotations": [_annotation(5, "ana@lobby.test", FIELDS[1], rubric=project.rubric, updated=None)]}
    report = import_export(project, _write(tmp_path, [task]))
    assert report.failed == [] and report.imported == 1
    assert current_annotations(project)[0].clip_id == clip.id
    assert import_export(project, _write(tmp_path, [task])).unchanged == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ('{"tasks": []}', "is a list of tasks, not a dict"), (b"\xff\xfe", "not UTF-8")],
)
def test_an_unreadable_file_is_one_clear_error_and_writes_nothing(project, tmp_path, content, message):
    path = tmp_path / "export.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CliptuneError, match=message):
        import_export(project, path)
    with pytest.raises(CliptuneError, match="no such file"):
        import_export(project, tmp_path / "missing.json")
    assert current_annotations(project, history=True) == []


def test_cli_import_export_prints_json_and_one_line_errors(project, tmp_path, capsys):
    tasks = _export(project)
    tasks.append({"id": 99, "data": {}, "annotations": []})
    path = _write(tmp_path, tasks)
    assert main(["labelstudio", "import-export", str(project.path), str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["imported"], result["skipped"], result["failed"][0]["task"]) == (5, 1, 99)
    assert main(["labelstudio", "import-export", str(project.path), str(path), "--user", "nonsense"]) == 1
    assert "--user 'nonsense'" in capsys.readouterr().err
    assert main(["labelstudio", "import-export", str(project.path), str(tmp_path / "none.json")]) == 1
    assert capsys.readouterr().err.strip().startswith("error: ")


def test_push_and_pull_say_what_is_missing_before_touching_the_network(project, monkeypatch):
    from annotate_ui.label_studio.bridge import LabelStudioError, pull, push
    from annotate_ui.server import free_port

    with pytest.raises(LabelStudioError, match="has not been pushed"):
        pull(project)
    with pytest.raises(LabelStudioError, match="give --url"):
        push(project)
    with pytest.raises(LabelStudioError, match="must start with http"):
        push(project, url="127.0.0.1:8080", api_key="x")
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(LabelStudioError, match="no Label Studio API key"):
        push(project, url="http://127.0.0.1:8080")
    with pytest.raises(LabelStudioError, match="need a model version"):
        push(project, url="http://127.0.0.1:8080", api_key="x", predictions={1: "x"})
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    project.log("label_studio_push", url=nobody, project_id=3, tasks={"7": 1})  # as if pushed before
    for call in (push, pull):  # the remembered server is down: one clear line, not a traceback
        with pytest.raises(LabelStudioError, match="cannot reach Label Studio at .* is it running"):
            call(project, api_key="legacy-token")
    assert current_annotations(project, history=True) == []


def test_predictions_file_errors_name_the_line(tmp_path):
    from annotate_ui.label_studio.bridge import read_predictions

    path = tmp_path / "predictions.jsonl"
    path.write_text('{"clip": 1, "output": "x"}\n\n{"clip": 2, "fields": {"event": "TAILGATING"}}\n')
    assert read_predictions(path) == {1: "x", 2: {"event": "TAILGATING"}}
    path.write_text('{"clip": 1, "output": "x"}\n{"clip": "one", "output": "y"}\n')
    with pytest.raises(CliptuneError, match="line 2: expected"):
        read_predictions(path)
    path.write_text("{oops\n")
    with pytest.raises(CliptuneError, match="line 1: not valid JSON"):
        read_predictions(path)


def test_an_older_label_studio_answer_does_not_replace_a_later_answer_made_in_cliptune(project, tmp_path):
    tasks = _export(project)
    import_export(project, _write(tmp_path, tasks))
    clip = _clips(project)[0].id
    revised = dict(FIELDS[0], persons=3)
    add_annotation(project, clip, "ana@lobby.test", fields=revised, seconds_spent=12.0, source="ui")  # now

    stale = copy.deepcopy(tasks)
    ann = stale[0]["annotations"][0]
    ann["result"] = result_from_fields(project.rubric, dict(FIELDS[0], persons=1))
    ann["updated_at"] = "2026-11-21T09:30:00Z"  # edited in Label Studio before the revision in the app
    report = import_export(project, _write(tmp_path, stale))
    assert (report.imported, report.superseded) == (0, 1)
    assert current_annotations(project, clip_ids=[clip], user="ana@lobby.test")[0].fields == revised

    later = copy.deepcopy(stale)
    later[0]["annotations"][0]["updated_at"] = "2999-01-01T00:00:00Z"  # edited in Label Studio afterwards
    assert import_export(project, _write(tmp_path, later)).imported == 1
    assert current_annotations(project, clip_ids=[clip], user="ana@lobby.test")[0].fields["persons"] == 1
