"""Label Studio users remembered by id, answers isolated per annotation, bounded write transactions, bulk
predictions. The offline tests read hand-made exports; the ``slow`` ones run a real Label Studio 1.23.2
(``tests/label_studio_server.py``): pull with a mapping, a plain pull, an Export-button file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import label_studio_server
import pytest
from conftest import ARTIFACTS, RUBRICS
from sqlalchemy import event, select

from annotate_ui.label_studio import writes
from annotate_ui.label_studio.bridge import LabelStudioError, import_export, linked_project, pull, push
from annotate_ui.label_studio.config import result_from_fields
from annotate_ui.label_studio.identities import remembered_users
from curation.cli.main import main
from curation.media.ingest import ingest
from curation.records.store import Annotation, Clip, Project, User

# The SDK calls pydantic's deprecated parse_obj when it refreshes its access token: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The `parse_obj` method is deprecated")
label_studio = label_studio_server.label_studio
label_studio_template = label_studio_server.label_studio_template

FIELDS = [
    {"event": "TAILGATING", "persons": 2, "badge_events": 1, "door": 14, "time": "02:14"},
    {"event": "NO_ACTIVITY", "persons": 0, "badge_events": 0, "door": 3, "time": "13:05"},
    {"event": "INTRUSION", "persons": 1, "badge_events": 0, "door": 27, "time": "23:59"},
]
BO = {"id": 2, "email": "bo@lobby.test", "username": "bo_ls", "first_name": "", "last_name": ""}
ANA = {"id": 3, "email": "ana@lobby.test", "username": "ana_ls", "first_name": "", "last_name": ""}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curation.media.synthetic import generate_sample

    out = tmp_path_factory.mktemp("ls-id-sample")
    generate_sample(out, n_clips=3, random_state=5)
    return out


@pytest.fixture(scope="module")
def ingested(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with 3 real clips (with proxies), made once and copied per test."""
    base = tmp_path_factory.mktemp("ls-id")
    project = Project.init(base / "project", RUBRICS / "surveillance_alert.yaml")
    assert ingest(project, [sample / "clips"], proxy_height=96, workers=1).added == 3
    project.engine.dispose()
    return base / "project"


@pytest.fixture
def project(ingested: Path, tmp_path: Path) -> Project:
    shutil.copytree(ingested, tmp_path / "project")
    return Project.open(tmp_path / "project")


def _clips(project: Project) -> list[Clip]:
    with project.session() as session:
        return list(session.scalars(select(Clip).order_by(Clip.id)))


def _ann(ann_id: int, who, fields, rubric, *, updated: str = "2026-11-20T10:00:00Z") -> dict:
    result = result_from_fields(rubric, fields) if isinstance(fields, dict) else fields
    return {"id": ann_id, "completed_by": who, "result": result, "was_cancelled": False, "lead_time": 10.0,
            "created_at": updated, "updated_at": updated, "project": 7}


def _task(task_id: int, clip: Clip, annotations: list[dict]) -> dict:
    return {"id": task_id, "data": {"video": "/data/local-files/?d=x.mp4", "cliptune_sha256": clip.sha256},
            "annotations": annotations, "project": 7}


def _write(path: Path, tasks: list[dict]) -> Path:
    path.write_text(json.dumps(tasks), encoding="utf-8")
    return path


def _owners(project: Project) -> dict[str, set[str]]:
    """Each stored Label Studio annotation (``label_studio:<project>:<id>``) -> the people it is stored under."""
    with project.session() as session:
        rows = session.execute(select(Annotation.external_id, User.name).join(User, User.id == Annotation.user_id)
                               .where(Annotation.external_id.like("label_studio:%"))).all()
    owners: dict[str, set[str]] = {}
    for external_id, name in rows:
        owners.setdefault(external_id.split("@")[0], set()).add(name)
    return owners


def _versions(project: Project) -> list[str]:
    with project.session() as session:
        return list(session.scalars(select(Annotation.external_id).where(Annotation.external_id.is_not(None))))


def _users(project: Project) -> set[str]:
    with project.session() as session:
        return set(session.scalars(select(User.name)))


def test_a_mapping_given_once_is_remembered_by_user_id_for_plain_imports_and_bare_ids(project, tmp_path):
    rubric, (c0, c1, c2) = project.rubric, _clips(project)
    first = [_task(50, c0, [_ann(100, BO, FIELDS[0], rubric), _ann(101, ANA, FIELDS[0], rubric)])]
    report = import_export(project, _write(tmp_path / "a.json", first), user_map={"bo@lobby.test": "bo"})
    assert (report.imported, report.failed, sorted(report.users_created)) == (2, [], ["ana@lobby.test", "bo"])
    remembered = remembered_users(project)
    assert remembered[2] == {"name": "bo", "email": "bo@lobby.test", "username": "bo_ls"}
    assert remembered[3]["name"] == "ana@lobby.test"  # unmapped: today's name, but now keyed by the user id

    # The Export button's file: bare user ids. The same annotations are unchanged, new ones go to the same people.
    bare = [_task(50, c0, [_ann(100, 2, FIELDS[0], rubric), _ann(101, 3, FIELDS[0], rubric)]),
            _task(51, c1, [_ann(102, 2, FIELDS[1], rubric), _ann(103, 3, FIELDS[1], rubric)])]
    report = import_export(project, _write(tmp_path / "b.json", bare))
    assert (report.imported, report.unchanged, report.failed, report.users_created) == (2, 2, [], [])

    # A plain import with details, bo's first answer edited in Label Studio: a new version, still bo's.
    edited = [_task(50, c0, [_ann(100, BO, FIELDS[2], rubric, updated="2026-11-21T08:00:00Z")]),
              _task(52, c2, [_ann(104, dict(BO, email="bo.new@lobby.test"), FIELDS[2], rubric)])]
    report = import_export(project, _write(tmp_path / "c.json", edited))
    assert (report.imported, report.unchanged, report.users_created, report.identity_changes) == (2, 0, [], [])
    assert remembered_users(project)[2]["email"] == "bo.new@lobby.test"  # details follow; the name stays

    owners = _owners(project)
    assert owners == {"label_studio:7:100": {"bo"}, "label_studio:7:101": {"ana@lobby.test"},
                      "label_studio:7:102": {"bo"}, "label_studio:7:103": {"ana@lobby.test"},
                      "label_studio:7:104": {"bo"}}
    versions = _versions(project)
    assert len(versions) == len(set(versions)) == 6  # each Label Studio version stored once
    assert _users(project) == {"bo", "ana@lobby.test"}
    for path in ("a.json", "b.json", "c.json"):  # every file again: nothing new
        assert import_export(project, tmp_path / path).imported == 0


def test_a_bare_id_nobody_met_fails_alone_and_a_conflicting_map_is_refused(project, tmp_path):
    rubric, (c0, *_) = project.rubric, _clips(project)
    tasks = [_task(50, c0, [_ann(100, 9, FIELDS[0], rubric), _ann(101, BO, FIELDS[0], rubric)])]
    report = import_export(project, _write(tmp_path / "a.json", tasks))
    assert report.imported == 1 and len(report.failed) == 1
    failure = report.failed[0]
    assert (failure["task"], failure["annotation"]) == (50, 100)
    assert "bare user id 9" in failure["error"] and "--user 9=" in failure["error"]
    assert 9 not in remembered_users(project)
    report = import_export(project, _write(tmp_path / "a.json", tasks), user_map={"9": "cy"})
    assert (report.imported, report.failed, report.users_created) == (1, [], ["cy"])
    assert remembered_users(project)[9] == {"name": "cy", "email": None, "username": None}
    with pytest.raises(LabelStudioError, match="give one name per person"):
        import_export(project, _write(tmp_path / "a.json", tasks), user_map={"2": "bo", "bo@lobby.test": "robert"})


def test_giving_a_mapping_again_changes_it_and_says_so(project, tmp_path, capsys):
    rubric, (c0, c1, c2) = project.rubric, _clips(project)
    import_export(project, _write(tmp_path / "a.json", [_task(50, c0, [_ann(100, BO, FIELDS[0], rubric)])]),
                  user_map={"bo@lobby.test": "bo"})
    later = [_task(50, c0, [_ann(100, 2, FIELDS[1], rubric, updated="2026-11-22T08:00:00Z")]),
             _task(51, c1, [_ann(105, 2, FIELDS[1], rubric)])]
    path = _write(tmp_path / "b.json", later)
    args = ["labelstudio", "import-export", str(project.path), str(path), "--user", "2=robert",
            "--user", "nobody@lobby.test=zed"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "Label Studio user 2 (bo@lobby.test) is now filed as robert, no longer as bo" in captured.out
    assert "answers already stored stay under bo" in captured.out
    assert "1 updated Label Studio annotations stay under the name they were first stored under" in captured.err
    assert "--user nobody@lobby.test: no such Label Studio user" in captured.err
    # Annotation 100's new version stays bo's (one annotation is never two people's); 105 is robert's.
    assert _owners(project) == {"label_studio:7:100": {"bo"}, "label_studio:7:105": {"robert"}}
    assert remembered_users(project)[2]["name"] == "robert"
    assert "zed" not in _users(project)
    # Remembered: the next plain import of a new answer files it under robert, and says nothing changed.
    newer = [_task(52, c2, [_ann(106, BO, FIELDS[2], rubric)])]
    assert main(["labelstudio", "import-export", str(project.path), str(_write(tmp_path / "c.json", newer)),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["imported"], result["identity_changes"], result["users_created"]) == (1, [], [])
    assert _owners(project)["label_studio:7:106"] == {"robert"}


def test_one_bad_answer_fails_alone_and_the_other_answers_on_its_task_import(project, tmp_path, capsys):
    rubric, (c0, *_) = project.rubric, _clips(project)
    bad_choice = _ann(101, ANA, FIELDS[0], rubric)
    bad_choice["result"][0]["value"]["choices"] = ["FIRE"]
    bad_number = _ann(103, {"id": 4, "email": "cy@lobby.test"}, FIELDS[0], rubric)
    bad_number["result"][1]["value"]["number"] = "two"
    tasks = [_task(50, c0, [bad_choice, _ann(102, BO, FIELDS[0], rubric), bad_number])]
    path = _write(tmp_path / "a.json", tasks)
    assert main(["labelstudio", "import-export", str(project.path), str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["imported"], result["users_created"]) == (1, ["bo@lobby.test"])
    failures = {f["annotation"]: f for f in result["failed"]}
    assert set(failures) == {101, 103} and {f["task"] for f in failures.values()} == {50}
    assert failures[101]["error"].startswith("event: 'FIRE' is not one of")
    assert failures[103]["error"].startswith("persons: 'number' must be a number")
    assert _owners(project) == {"label_studio:7:102": {"bo@lobby.test"}}
    assert main(["labelstudio", "import-export", str(project.path), str(path)]) == 0  # again: nothing new
    captured = capsys.readouterr()
    assert "0 annotation versions imported" in captured.out and "2 failed" in captured.out
    assert "task 50, annotation 101: event: 'FIRE'" in captured.err


def _many_clips(project: Project, n: int) -> list[Clip]:
    """Clip rows without media: the import reads only their ids and hashes."""
    with project.write() as session:
        session.add_all([Clip(root="/footage", path=f"many/{i}.mp4", sha256=f"{i + 10**6:064d}",
                              source_sha256=f"{i + 10**6:064d}", duration_s=4.0, fps=25.0, width=64, height=48,
                              n_frames=100, group_key=f"g{i}") for i in range(n)])
    return [c for c in _clips(project) if c.path.startswith("many/")]


WRITER = """
import json, sys, time
from curation.records.store import Project
project, stop, out = Project.open(sys.argv[1]), sys.argv[2], sys.argv[3]
import pathlib
waits = []
while not pathlib.Path(stop).exists():
    tic = time.perf_counter()
    project.log("app_heartbeat")  # a small write, as the app's annotators make
    waits.append(time.perf_counter() - tic)
    time.sleep(0.02)
pathlib.Path(out).write_text(json.dumps(waits))
"""


def test_a_large_import_writes_in_bounded_transactions_and_never_blocks_the_app(project, tmp_path):
    rubric = project.rubric
    clips = _many_clips(project, 300)
    people = [{"id": 100 + k, "email": f"p{k}@lobby.test"} for k in range(20)]
    tasks = [_task(1000 + i, clip, [_ann(10_000 + 20 * i + k, who, FIELDS[(i + k) % 3], rubric)
                                    for k, who in enumerate(people)]) for i, clip in enumerate(clips)]
    path = _write(tmp_path / "many.json", tasks)

    sizes: list[int] = []
    pending = [0]

    @event.listens_for(project.engine, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO annotation"):
            pending[0] += len(parameters) if executemany else 1

    @event.listens_for(project.engine, "commit")
    def _commit(conn):
        if pending[0]:
            sizes.append(pending[0])
        pending[0] = 0

    stop, out = tmp_path / "stop", tmp_path / "waits.json"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(project.path), str(stop), str(out)])
    try:
        time.sleep(2.0)  # the writer is writing before the import starts
        tic = time.perf_counter()
        report = import_export(project, path)
        import_s = time.perf_counter() - tic
        time.sleep(0.5)
    finally:
        stop.touch()
        writer.wait(timeout=60)
    assert (report.imported, report.failed, len(report.users_created)) == (6000, [], 20)
    assert sum(sizes) == 6000 and max(sizes) <= writes.BATCH_ROWS and len(sizes) >= 3
    assert all(size % 20 == 0 for size in sizes)  # whole tasks (clips) per transaction, never part of one
    waits = json.loads(out.read_text())
    assert len(waits) > 10 and max(waits) < 2.0, max(waits)  # never held up for long by the import
    versions = _versions(project)
    assert len(versions) == len(set(versions)) == 6000
    again = import_export(project, path)
    assert (again.imported, again.unchanged) == (0, 6000)
    _record(label_studio_import_6000_rows_s=import_s, app_write_max_wait_s=max(waits),
            import_transactions=len(sizes))


def test_a_failed_write_leaves_no_task_half_imported_and_a_rerun_completes(project, tmp_path, monkeypatch):
    rubric, (c0, c1, c2) = project.rubric, _clips(project)
    tasks = [_task(50 + i, clip, [_ann(100 + i, ANA, FIELDS[i], rubric), _ann(200 + i, BO, FIELDS[i], rubric)])
             for i, clip in enumerate((c0, c1, c2))]
    path = _write(tmp_path / "a.json", tasks)
    monkeypatch.setattr(writes, "BATCH_ROWS", 2)  # one clip per transaction
    # A real failure inside the second clip's transaction, after its first row went in: the database refuses bo.
    with project.write() as session:
        session.connection().exec_driver_sql(
            f"CREATE TRIGGER refuse BEFORE INSERT ON annotation WHEN NEW.clip_id = {c1.id} AND NEW.user_id IN "
            "(SELECT id FROM user WHERE name = 'bo@lobby.test') BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    with pytest.raises(LabelStudioError, match=r"failed after 2 were stored \(disk says no\); run the import again"):
        import_export(project, path)
    assert set(_owners(project)) == {"label_studio:7:100", "label_studio:7:200"}  # c0 whole, c1 nothing
    with project.write() as session:
        session.connection().exec_driver_sql("DROP TRIGGER refuse")
    report = import_export(project, path)
    assert (report.imported, report.unchanged) == (4, 2)
    versions = _versions(project)
    assert len(versions) == len(set(versions)) == 6


def _record(**figures: float) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "label_studio_timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update({k: round(v, 3) for k, v in figures.items()})
    path.write_text(json.dumps(data, indent=2) + "\n")


@pytest.mark.slow
def test_pull_with_a_mapping_then_plain_pull_then_export_button_file_file_everyone_once(
        label_studio, project, tmp_path, monkeypatch, capsys):
    server = label_studio(document_root=project.media_dir)
    admin_key, bo_key = server.tokens["admin"], server.tokens["annotator"]
    admin_email, bo_email = server.emails["admin"], server.emails["annotator"]
    from label_studio_sdk import LabelStudio

    report = push(project, url=server.url, api_key=admin_key)
    assert report.tasks_added == 3
    task_of = {clip: task for task, clip in linked_project(project)["tasks"].items()}
    c0, c1, c2 = (task_of[c.id] for c in _clips(project))
    admin, bo = LabelStudio(base_url=server.url, api_key=admin_key), LabelStudio(base_url=server.url, api_key=bo_key)
    rubric = project.rubric
    admin.annotations.create(id=c0, result=result_from_fields(rubric, FIELDS[0]), lead_time=9.0)
    bo_first = bo.annotations.create(id=c0, result=result_from_fields(rubric, FIELDS[1]), lead_time=7.0)
    bo.annotations.create(id=c1, result=result_from_fields(rubric, FIELDS[1]), lead_time=5.0)

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", admin_key)
    assert main(["labelstudio", "pull", str(project.path), "--user", f"{bo_email}=bo", "--user",
                 f"{admin_email}=ana", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["imported"], first["failed"], sorted(first["users_created"])) == (3, [], ["ana", "bo"])

    # bo agrees after all on clip 0 and answers clip 2; a plain pull files both under bo, not under bo's e-mail.
    bo.annotations.update(id=bo_first.id, result=result_from_fields(rubric, FIELDS[0]), lead_time=8.0)
    bo.annotations.create(id=c2, result=result_from_fields(rubric, FIELDS[2]), lead_time=6.0)
    plain = pull(project, api_key=admin_key)
    assert (plain.imported, plain.unchanged, plain.users_created, plain.failed) == (2, 2, [], [])

    # The Export button's file (bare user ids); the admin has answered clip 1 meanwhile.
    admin.annotations.create(id=c1, result=result_from_fields(rubric, FIELDS[1]), lead_time=4.0)
    project_id = linked_project(project)["project_id"]
    data = b"".join(admin.projects.exports.download_sync(project_id, export_type="JSON"))
    exported = json.loads(data)
    completed_by = [a["completed_by"] for t in exported for a in t["annotations"]]
    assert len(completed_by) == 5 and all(isinstance(who, int) for who in completed_by)  # bare ids indeed
    path = tmp_path / "export-button.json"
    path.write_bytes(data)
    assert main(["labelstudio", "import-export", str(project.path), str(path), "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert (from_file["imported"], from_file["unchanged"], from_file["failed"]) == (1, 4, [])

    # Every Label Studio annotation is stored under one person, the mapped one; each version once.
    who = {a["id"]: a["completed_by"] for t in exported for a in t["annotations"]}
    ids = {name: next(u.id for u in admin.users.list() if u.email == email)
           for name, email in (("ana", admin_email), ("bo", bo_email))}
    owners = _owners(project)
    assert len(owners) == 5
    for annotation_id, user_id in who.items():
        assert owners[f"label_studio:{project_id}:{annotation_id}"] == {"ana" if user_id == ids["ana"] else "bo"}
    versions = _versions(project)
    assert len(versions) == len(set(versions)) == 6  # 5 annotations, bo's first one in two versions
    assert _users(project) == {"ana", "bo"}
    assert pull(project, api_key=admin_key).imported == 0


def _fake_proxy_clips(project: Project, n: int) -> dict[int, dict]:
    """Clip rows whose proxies Label Studio never fetches (tasks point at --media-url): only predictions matter."""
    with project.write() as session:
        session.add_all([Clip(root="/footage", path=f"p/{i}.mp4", sha256=f"{i + 2 * 10**6:064d}",
                              source_sha256=f"{i:064d}", duration_s=4.0, fps=25.0, width=64, height=48, n_frames=100,
                              group_key=f"g{i}", proxy_path=f"media/proxies/p{i}.mp4") for i in range(n)])
    return {c.id: FIELDS[c.id % 3] for c in _clips(project) if c.path.startswith("p/")}


@pytest.mark.slow
def test_predictions_are_pushed_in_bulk(label_studio, tmp_path, monkeypatch):
    server = label_studio(document_root=tmp_path)
    key = server.tokens["admin"]
    requests: list[tuple[str, str]] = []
    send = httpx.Client.send

    def counted(self, request, **kwargs):  # the real request, counted (not the SDK's access-token refresh)
        if not request.url.path.startswith("/api/token/"):
            requests.append((request.method, request.url.path))
        return send(self, request, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", counted)
    from label_studio_sdk import LabelStudio

    client = LabelStudio(base_url=server.url, api_key=key)
    figures = {}
    # 200 predictions for tasks pushed before (the bulk endpoint), then 200 new tasks carrying theirs.
    existing = Project.init(tmp_path / "existing", RUBRICS / "surveillance_alert.yaml")
    answers = _fake_proxy_clips(existing, 200)
    push(existing, url=server.url, api_key=key, media_url="http://127.0.0.1:9/media/")
    requests.clear()
    tic = time.perf_counter()
    report = push(existing, api_key=key, predictions=answers, model_version="m1")
    figures["predictions_200_existing_tasks_s"] = time.perf_counter() - tic
    assert (report.predictions_added, report.predictions_failed) == (200, [])
    posts = [path for method, path in requests if method == "POST"]
    assert posts == [f"/api/projects/{report.project_id}/import/predictions"]  # one request for all 200
    assert len(requests) <= 6, requests  # + reading the project, listing nothing, setting the model version

    fresh = Project.init(tmp_path / "fresh", RUBRICS / "surveillance_alert.yaml")
    answers_fresh = _fake_proxy_clips(fresh, 200)
    requests.clear()
    tic = time.perf_counter()
    report_fresh = push(fresh, url=server.url, api_key=key, media_url="http://127.0.0.1:9/media/",
                        predictions=answers_fresh, model_version="m1")
    figures["tasks_and_predictions_200_new_s"] = time.perf_counter() - tic
    assert (report_fresh.tasks_added, report_fresh.predictions_added) == (200, 200)
    posts = [path for method, path in requests if method == "POST"]
    assert posts == ["/api/projects/", f"/api/projects/{report_fresh.project_id}/import"]  # with the tasks
    _record(**figures)
    assert figures["predictions_200_existing_tasks_s"] < 10  # one request per prediction took 16-36 s

    rubric = fresh.rubric
    for pushed, local, clip_answers in ((report, existing, answers), (report_fresh, fresh, answers_fresh)):
        stored = list(client.predictions.list(project=pushed.project_id))
        assert len(stored) == 200 and {p.model_version for p in stored} == {"m1"}
        assert client.projects.get(pushed.project_id).model_version == "m1"
        by_task = {p.task: p.result for p in stored}
        assert all(by_task[task] == result_from_fields(rubric, clip_answers[clip])
                   for task, clip in linked_project(local)["tasks"].items())
    again = push(existing, api_key=key, predictions=answers, model_version="m1")
    assert (again.predictions_added, again.predictions_existing) == (0, 200)
    assert len(list(client.predictions.list(project=report.project_id))) == 200
