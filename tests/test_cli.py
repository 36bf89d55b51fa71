"""The `cliptune` command as a user runs it: a subprocess, real files, one-line errors and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from curation.records.store import Project
from curation.records.users import authenticate

RUBRIC = Path(__file__).resolve().parent.parent / "rubrics" / "surveillance_alert.yaml"


def cliptune(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "CLIPTUNE_PASSWORD"} | (env or {})
    return subprocess.run([sys.executable, "-m", "curation.cli", *args], capture_output=True, text=True,
                          env=environment, stdin=subprocess.DEVNULL, timeout=120)


def test_init_users_and_status(tmp_path: Path) -> None:
    project = tmp_path / "lobby"
    created = cliptune("init", str(project), "--rubric", "surveillance_alert", "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["rubric"] == "surveillance_alert"
    again = cliptune("init", str(project), "--rubric", "surveillance_alert")
    assert again.returncode == 1 and "already a cliptune project" in again.stderr

    added = cliptune("users", "add", str(project), "ana", "--role", "annotator", "--json",
                     env={"CLIPTUNE_PASSWORD": "a long password"})
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"name": "ana", "role": "annotator"}
    assert authenticate(Project.open(project), "ana", "a long password") is not None
    assert authenticate(Project.open(project), "ana", "wrong password") is None
    stored = Project.open(project).engine.connect().exec_driver_sql("SELECT password_hash FROM user").scalar()
    assert "a long password" not in stored and stored.startswith("scrypt")

    other_env = cliptune("users", "add", str(project), "rev", "--role", "reviewer", "--password-env", "REV_PW",
                         env={"REV_PW": "another long one"})
    assert other_env.returncode == 0, other_env.stderr
    no_password = cliptune("users", "add", str(project), "ben")
    assert no_password.returncode == 1 and "no password" in no_password.stderr
    bad_role = cliptune("users", "add", str(project), "cho", "--role", "boss", env={"CLIPTUNE_PASSWORD": "x" * 12})
    assert bad_role.returncode == 1 and "boss" in bad_role.stderr and "Traceback" not in bad_role.stderr
    twice = cliptune("users", "add", str(project), "ana", env={"CLIPTUNE_PASSWORD": "a long password"})
    assert twice.returncode == 1 and "ana" in twice.stderr

    status = json.loads(cliptune("status", str(project), "--json").stdout)
    assert status["users"] == {"total": 2, "by_role": {"annotator": 1, "reviewer": 1}}
    assert status["clips"]["total"] == 0 and status["rubric"]["name"] == "surveillance_alert"
    table = cliptune("status", str(project))
    assert table.returncode == 0 and "clips" in table.stdout


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    missing = cliptune("status", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "not a cliptune project" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr
    bad_rubric = cliptune("init", str(tmp_path / "p"), "--rubric", str(tmp_path / "nope.yaml"))
    assert bad_rubric.returncode == 1 and "Traceback" not in bad_rubric.stderr
    usage = cliptune("ingest")
    assert usage.returncode == 2 and "Usage" in usage.stderr
    assert cliptune("--help").returncode == 0
