"""`cliptune ui` and `cliptune demo`: the app served on 127.0.0.1 and stopped cleanly; the demo project built with
people and answers; mistakes as one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from annotate_ui.server import free_port
from curation.cli.main import main
from curation.records.store import Project

RUBRIC = Path(__file__).resolve().parent.parent / "rubrics" / "surveillance_alert.yaml"
CLIPTUNE = [sys.executable, "-c", "import sys; from curation.cli.main import main; sys.exit(main())"]


def test_ui_refuses_a_folder_that_is_not_a_project(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["ui", str(tmp_path / "nothing")]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and "cliptune init" in captured.err and captured.err.count("\n") == 1
    assert captured.out == ""  # nothing claimed to be served
    Project.init(tmp_path / "p", RUBRIC)
    assert main(["ui", str(tmp_path / "p"), "--idle-hours", "0"]) == 1
    assert "--idle-hours" in capsys.readouterr().err


@pytest.mark.slow
def test_ui_serves_on_loopback_and_stops_with_its_app(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "p", RUBRIC)
    port = free_port()
    process = subprocess.Popen([*CLIPTUNE, "ui", str(project.path), "--port", str(port), "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [process.stdout.readline()]
        while lines[-1] not in ("}\n", ""):
            lines.append(process.stdout.readline())
        assert json.loads("".join(lines)) == {"url": f"http://127.0.0.1:{port}", "project": str(project.path)}
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                    assert response.read() == b"ok"
                    break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
                time.sleep(0.2)
        listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert listening.split()[3] == f"127.0.0.1:{port}"  # loopback only, not 0.0.0.0
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(20)
    assert returncode == 0
    with pytest.raises(OSError):  # the Streamlit child went with it
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)


@pytest.mark.slow
def test_demo_builds_a_project_with_people_and_answers(tmp_path: Path) -> None:
    from curation.records.users import authenticate
    from curation.team.progress import annotator_progress

    result = subprocess.run([*CLIPTUNE, "demo", str(tmp_path / "demo"), "--sample", str(tmp_path / "sample"),
                             "--clips", "6", "--no-serve", "--json"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["url"] == "http://127.0.0.1:8501" and report["password"] == "cliptune-demo"
    assert report["logins"] == {"ana": "annotator", "ben": "annotator", "cho": "annotator", "rev": "reviewer",
                                "lead": "lead"}
    project = Project.open(tmp_path / "demo")
    for name in report["logins"]:
        assert authenticate(project, name, "cliptune-demo") is not None
    people = annotator_progress(project)
    assert [p.user for p in people] == ["ana", "ben", "cho"]
    assert all(0 < p.done < p.assigned for p in people)  # some answers, and work left for the label page
