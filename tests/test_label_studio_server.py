"""The Label Studio bridge against a real Label Studio server (1.23.2, from .venv-labelstudio) on 127.0.0.1.

push -> annotate as two users through the API -> pull -> resolve / agreement. The session migrates the
server's database once (~45 s); each test starts a copy (~5 s). Timings go to artifacts/label_studio_timings.json.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import label_studio_server
import pytest
from conftest import RUBRICS
from label_studio_sdk import LabelStudio

from annotate_ui.label_studio.bridge import linked_project, pull, push
from annotate_ui.label_studio.config import instructions_html, label_config, result_from_fields
from curation.cli.main import main
from curation.media.ingest import ingest
from curation.records.annotations import current_annotations
from curation.records.store import Clip, Project
from curation.review.resolve import resolve

# The SDK calls pydantic's deprecated parse_obj when it refreshes its access token: not ours to fix.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:The `parse_obj` method is deprecated")]
# The server fixtures (pytest finds fixtures bound to names in a test module).
label_studio = label_studio_server.label_studio
label_studio_template = label_studio_server.label_studio_template


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curation.media.synthetic import generate_sample

    out = tmp_path_factory.mktemp("ls-sample")
    generate_sample(out, n_clips=4, random_state=11)
    return out


def _truth(sample: Path) -> dict[str, dict]:
    """Known answers by file name (clips ingested one by one have their file name as path)."""
    lines = (sample / "ground_truth.jsonl").read_text().splitlines()
    return {Path(row["file"]).name: row["fields"] for row in map(json.loads, lines)}


def _file(sample: Path, name: str) -> Path:
    return next((sample / "clips").rglob(name))


def _new_project(tmp_path: Path, sample: Path, files: list[str]) -> Project:
    project = Project.init(tmp_path / "lobby", RUBRICS / "surveillance_alert.yaml")
    report = ingest(project, [_file(sample, f) for f in files], proxy_height=96, workers=1)
    assert report.added == len(files), report.failed
    return project


def _clips(project: Project) -> list[Clip]:
    with project.session() as session:
        return list(session.query(Clip).order_by(Clip.id))


def _record(artifacts_dir: Path, **timings: float) -> None:
    path = artifacts_dir / "label_studio_timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update({k: round(v, 2) for k, v in timings.items()})
    path.write_text(json.dumps(data, indent=2) + "\n")


def test_push_annotate_as_two_users_pull_and_resolve(label_studio, label_studio_template, sample, tmp_path,
                                                     monkeypatch, capsys, artifacts_dir):
    files = sorted(_truth(sample))
    project = _new_project(tmp_path, sample, files[:3])
    server = label_studio(document_root=project.media_dir)
    admin_key, bo_key = server.tokens["admin"], server.tokens["annotator"]
    cycle = time.perf_counter()

    report = push(project, url=server.url, api_key=admin_key)
    assert (report.project_created, report.tasks_added, report.tasks_existing) == (True, 3, 0)
    admin = LabelStudio(base_url=server.url, api_key=admin_key)
    remote = admin.projects.get(report.project_id)
    assert remote.label_config == label_config(project.rubric)
    assert remote.expert_instruction == instructions_html(project.rubric) and remote.show_instruction
    tasks = {t.id: t for t in admin.tasks.list(project=report.project_id)}
    clips = {c.id: c for c in _clips(project)}
    link = linked_project(project, server.url)
    assert set(link["tasks"]) == set(tasks) and set(link["tasks"].values()) == set(clips)
    bearer = {"Authorization": f"Bearer {admin._client_wrapper._tokens_client.api_key}"}
    for task_id, clip_id in link["tasks"].items():
        data, clip = tasks[task_id].data, clips[clip_id]
        assert (data["fps"], data["cliptune_sha256"]) == (clip.fps, clip.sha256)
        served = httpx.get(server.url + data["video"], headers=bearer, timeout=30)  # local-files serving works
        assert served.status_code == 200 and served.content == (project.path / clip.proxy_path).read_bytes()

    # A clip ingested later: pushing again (through the CLI, key from the environment) adds only that one.
    assert ingest(project, [_file(sample, files[3])], proxy_height=96, workers=1).added == 1
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", admin_key)
    assert main(["labelstudio", "push", str(project.path), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["project_id"], again["tasks_added"], again["tasks_existing"]) == (report.project_id, 1, 3)
    link = linked_project(project)
    assert len(link["tasks"]) == 4
    storages = list(admin.import_storage.local.list(project=report.project_id))
    assert [s.path for s in storages] == [str((project.path / "media" / "proxies").resolve())]  # one, not synced
    assert len(list(admin.tasks.list(project=report.project_id))) == 4

    # Two people annotate through the API: the admin gives the true answer everywhere; bo agrees on the first
    # clip, disagrees on the event of the second, skips the third and does not see the fourth.
    bo = LabelStudio(base_url=server.url, api_key=bo_key)
    truth = _truth(sample)
    by_clip = {clip_id: task_id for task_id, clip_id in link["tasks"].items()}
    order = [c.id for c in _clips(project)]
    path_of = {c.id: c.path for c in _clips(project)}
    rubric = project.rubric
    for clip_id in order:
        admin.annotations.create(id=by_clip[clip_id], result=result_from_fields(rubric, truth[path_of[clip_id]]),
                                 lead_time=30.0)
    first, second, third = order[:3]
    bo.annotations.create(id=by_clip[first], result=result_from_fields(rubric, truth[path_of[first]]), lead_time=12.5)
    wrong = dict(truth[path_of[second]])
    wrong["event"] = next(c for c in rubric.field_map["event"].choices if c != wrong["event"])
    bo_second = bo.annotations.create(id=by_clip[second], result=result_from_fields(rubric, wrong), lead_time=20.0)
    bo.annotations.create(id=by_clip[third], result=[], was_cancelled=True, lead_time=3.0)

    pulled = pull(project, api_key=admin_key)
    assert (pulled.imported, pulled.skipped, pulled.unchanged, pulled.failed) == (7, 1, 0, [])
    assert sorted(pulled.users_created) == sorted(server.emails.values())
    bo_name = server.emails["annotator"]
    current = {(r.clip_id, r.user): r for r in current_annotations(project)}
    assert current[(first, bo_name)].seconds_spent == 12.5 and current[(first, bo_name)].source == "label_studio"
    assert current[(third, bo_name)].status == "skipped"
    result = resolve(project)
    assert result.gold[first].source == "unanimous" and result.gold[first].fields == truth[path_of[first]]
    assert [(q.clip_id, q.fields) for q in result.needs_review] == [(second, ("event",))]
    assert result.gold[third].source == "single"  # bo skipped it: the admin's answer stands alone

    assert pull(project, api_key=admin_key).imported == 0  # idempotent
    # bo corrects the second clip in Label Studio: a new version, the old one kept.
    bo.annotations.update(id=bo_second.id, result=result_from_fields(rubric, truth[path_of[second]]), lead_time=26.0)
    assert main(["labelstudio", "pull", str(project.path), "--json"]) == 0
    repulled = json.loads(capsys.readouterr().out)
    assert (repulled["imported"], repulled["unchanged"]) == (1, 6)  # 7 annotations, one of them updated
    history = current_annotations(project, clip_ids=[second], user=bo_name, history=True)
    assert [h.fields["event"] for h in history] == [wrong["event"], truth[path_of[second]]["event"]]
    result = resolve(project)
    assert result.needs_review == [] and result.gold[second].source == "unanimous"
    assert {result.gold[c].fields == truth[path_of[c]] for c in order} == {True}
    _check_agreement(project, rubric, sorted(server.emails.values()))
    _record(artifacts_dir, migrate_s=label_studio_template.migrate_s, users_s=label_studio_template.users_s,
            copied_start_s=server.start_s, full_cycle_s=time.perf_counter() - cycle)


def _check_agreement(project: Project, rubric, annotators: list[str]) -> None:
    """Agreement on the pulled answers (resolve above checks the same)."""
    from curation.review.field_agreement import agreement_report

    report = agreement_report(project, n_boot=50)
    assert set(report["fields"]) == set(rubric.field_map)
    for name in annotators:  # after bo's correction, the two agree on every clip both answered
        assert report["annotators"][name]["agreement_with_others"] == 1.0


def test_predictions_are_pushed_once_with_their_model_version(label_studio, sample, tmp_path, capsys):
    files = sorted(_truth(sample))
    project = _new_project(tmp_path, sample, files[:2])
    server = label_studio(document_root=project.media_dir)
    key = server.tokens["admin"]
    first, second = (c.id for c in _clips(project))
    answers = {first: "TAILGATING — 2 persons, 1 badge event, Door 14, 02:14",
               second: {"event": "NO_ACTIVITY", "persons": 0, "badge_events": 0, "door": 3, "time": "13:05"},
               999: "INTRUSION — 1 person, 0 badge events, Door 1, 00:01"}
    report = push(project, url=server.url, api_key=key, predictions=answers, model_version="tiny-lora-1")
    assert (report.tasks_added, report.predictions_added) == (2, 2)
    assert report.predictions_failed == [{"clip": 999, "error": "not pushed to Label Studio"}]
    client = LabelStudio(base_url=server.url, api_key=key)
    assert client.projects.get(report.project_id).model_version == "tiny-lora-1"
    task_of = {clip: task for task, clip in linked_project(project)["tasks"].items()}
    predictions = list(client.predictions.list(task=task_of[first]))
    assert [p.model_version for p in predictions] == ["tiny-lora-1"]
    assert predictions[0].result == result_from_fields(project.rubric, project.rubric.parse(answers[first]))
    again = push(project, api_key=key, predictions=answers, model_version="tiny-lora-1")
    assert (again.predictions_added, again.predictions_existing, again.tasks_added) == (0, 2, 0)
    assert len(list(client.predictions.list(task=task_of[first]))) == 1

    # A refused key is one line on stderr and a non-zero exit, not a traceback.
    assert main(["labelstudio", "pull", str(project.path), "--api-key", "not-a-token"]) == 1
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: Label Studio") and "401" in message and "\n" not in message


def test_a_busy_port_is_detected_and_the_server_listens_on_loopback_only(label_studio, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        server = label_studio(document_root=tmp_path, port=taken)
        assert server.port != taken and label_studio_server._listens(server.process.pid, server.port)
    assert httpx.get(f"{server.url}/health", timeout=5).json() == {"status": "UP"}
    listeners = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[3] == "0A" and line.split()[1].endswith(f":{server.port:04X}")]
    assert listeners == [f"0100007F:{server.port:04X}"]  # 127.0.0.1 only, not 0.0.0.0
    server.stop()
    assert server.process.returncode is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health", timeout=5)
