"""A real Label Studio server for the bridge's integration tests (import the fixtures into a test module).

The server runs from its own virtual environment, ``.venv-labelstudio`` (``make labelstudio``), so that its pins
(Django, pytz<2023, openai<2, ...) stay out of cliptune's. It listens on 127.0.0.1 only, keeps its SQLite
database in a temporary folder (``LABEL_STUDIO_BASE_DATA_DIR``), makes no calls home, and serves local files
from the document root it is given (a project's ``media`` folder).

Migrating a fresh database takes ~45 s, so the session migrates once (``label_studio_template``: an admin and
a second annotator, each with a personal access token), then every server start copies that folder (~4 s).
The tokens stay valid in the copies: they are signed with the secret key the server saved in its data folder.

Example::

    from label_studio_server import label_studio, label_studio_template  # noqa: F401 (fixtures)

    def test_x(label_studio, tmp_path):
        server = label_studio(document_root=tmp_path)
        server.url, server.tokens["admin"], server.tokens["annotator"]
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from annotate_ui.server import free_port

REPO = Path(__file__).resolve().parent.parent
LS_VENV = Path(os.environ.get("CLIPTUNE_LABEL_STUDIO_VENV", REPO / ".venv-labelstudio"))
LS_BIN = LS_VENV / "bin" / "label-studio"
USERS = {"admin": ("admin@cliptune.test", "admin-pass-1234"), "annotator": ("bo@cliptune.test", "bo-pass-12345")}
MOVED = re.compile(r"Trying to start at (\d+)")


@dataclass
class LabelStudioServer:
    url: str
    port: int
    data_dir: Path
    log: Path
    process: subprocess.Popen
    start_s: float
    tokens: dict[str, str] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=lambda: {k: v[0] for k, v in USERS.items()})

    def stop(self) -> None:
        """SIGTERM (the server stops at once), then SIGKILL if it has not gone after 15 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # If the test process is killed outright, the kernel stops the server too: it is never left running.
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def server_env(data_dir: Path, document_root: Path, *, admin: bool = False) -> dict[str, str]:
    """A clean environment: no USERNAME/PASSWORD/PORT/HOST fallbacks leak in, nothing is sent anywhere."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(data_dir.parent / "home"),  # anything it still writes under ~ stays in the temp folder
        "PYTHONUNBUFFERED": "1",  # so the "port is in use" warning reaches the log at once
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "DJANGO_DB": "sqlite",
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "LOCAL_FILES_SERVING_ENABLED": "true",
        "LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
    }
    if admin:
        env["LABEL_STUDIO_USERNAME"], env["LABEL_STUDIO_PASSWORD"] = USERS["admin"]
    return env


def start_server(data_dir: Path, document_root: Path, *, port: int | None = None, admin: bool = False,
                 timeout_s: float = 240) -> LabelStudioServer:
    """Start Label Studio on 127.0.0.1 and wait until ``/health`` says UP on the port it really got."""
    (data_dir.parent / "home").mkdir(exist_ok=True)
    port = port or free_port()
    log = data_dir.parent / f"{data_dir.name}.log"
    started = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(LS_BIN), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(data_dir)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=server_env(data_dir, document_root, admin=admin), preexec_fn=_die_with_parent,
        )
    server = LabelStudioServer(f"http://127.0.0.1:{port}", port, data_dir, log, process, 0.0)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Label Studio exited with {process.returncode}; log:\n{_tail(log)}")
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"Label Studio was not up after {timeout_s:.0f} s; log:\n{_tail(log)}")
            moved = MOVED.findall(log.read_text(errors="replace"))
            if moved:  # the port was busy: Label Studio silently took another one
                server.port = int(moved[-1])
                server.url = f"http://127.0.0.1:{server.port}"
            try:
                if httpx.get(f"{server.url}/health", timeout=2).json().get("status") == "UP" and _listens(
                    process.pid, server.port
                ):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
    except BaseException:
        server.stop()
        raise
    server.start_s = time.perf_counter() - started
    return server


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself listens on 127.0.0.1:``port`` (not some other server that answers there)."""
    tcp = Path("/proc/net/tcp")
    if not tcp.exists():  # not Linux: trust /health
        return True
    inodes = {
        line.split()[9]
        for line in tcp.read_text().splitlines()[1:]
        if line.split()[1] == f"0100007F:{port:04X}" and line.split()[3] == "0A"  # 0A: LISTEN
    }
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd) in {f"socket:[{i}]" for i in inodes} for fd in fds.iterdir())
    except OSError:
        return False


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def login_token(url: str, email: str, password: str) -> str:
    """A personal access token without a person: log in (CSRF cookie, form post), then POST /api/token/."""
    with httpx.Client(base_url=url, timeout=30) as client:
        client.get("/user/login/")
        response = client.post("/user/login/", headers={"Referer": f"{url}/user/login/"},
                               data={"email": email, "password": password,
                                     "csrfmiddlewaretoken": client.cookies.get("csrftoken")})
        if response.status_code != 302:
            raise RuntimeError(f"login as {email} failed ({response.status_code})")
        # A second POST answers 409 and GET shows the token without its signature: ask once, keep it.
        response = client.post("/api/token/", headers={"X-CSRFToken": client.cookies.get("csrftoken"),
                                                        "Referer": url})
        response.raise_for_status()
        return response.json()["token"]


def sign_up(url: str, admin_token: str, email: str, password: str) -> str:
    """A second user through the organisation's invite link (``users.create`` does not store a password)."""
    from label_studio_sdk import LabelStudio

    invite = LabelStudio(base_url=url, api_key=admin_token).organizations.invites.get_invite_link()
    with httpx.Client(base_url=url, timeout=30) as client:
        client.get("/user/signup/")
        response = client.post(f"/user/signup/?token={invite.token}", headers={"Referer": f"{url}/user/signup/"},
                               data={"email": email, "password": password,
                                     "csrfmiddlewaretoken": client.cookies.get("csrftoken")})
        if response.status_code != 302:
            raise RuntimeError(f"sign-up of {email} failed ({response.status_code}): {response.text[:300]}")
    return login_token(url, email, password)


@dataclass
class Template:
    data_dir: Path
    tokens: dict[str, str]
    migrate_s: float  # first start of a fresh database, migrations included
    users_s: float  # tokens and the second user


_TEMPLATES: list[Template] = []


@pytest.fixture(scope="session")
def label_studio_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """A migrated Label Studio data folder with two users and their tokens, made once per test session."""
    if not LS_BIN.exists():
        pytest.skip(f"Label Studio server not installed ({LS_BIN} is missing): run `make labelstudio`")
    # Each test module that imports this fixture gets its own fixture definition, and with it its own session
    # cache: keep the migrated folder here so the session migrates once, whichever modules use it.
    if _TEMPLATES:
        return _TEMPLATES[0]
    base = tmp_path_factory.mktemp("label-studio")
    data_dir = base / "template"
    data_dir.mkdir()
    server = start_server(data_dir, base, admin=True)
    try:
        tic = time.perf_counter()
        tokens = {"admin": login_token(server.url, *USERS["admin"])}
        tokens["annotator"] = sign_up(server.url, tokens["admin"], *USERS["annotator"])
        users_s = time.perf_counter() - tic
    finally:
        server.stop()
    _TEMPLATES.append(Template(data_dir, tokens, server.start_s, users_s))
    return _TEMPLATES[0]


def _wait_for_token(url: str, token: str, timeout_s: float = 20.0) -> None:
    """Wait until the server accepts the token, not only answers /health.

    Once in about five full runs the first authenticated request right after start was refused (401 "Token is
    invalid") while later runs of the same test passed; a server that is up but not yet accepting tokens is a
    start-up race of the test server, not something cliptune can act on.
    """
    from label_studio_sdk import LabelStudio

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            LabelStudio(base_url=url, api_key=token).users.whoami()
            return
        except Exception as exc:  # the SDK's ApiError (401) or a connection error while it settles
            if time.monotonic() > deadline:
                raise RuntimeError(f"Label Studio at {url} still refuses the test token: {exc}") from None
            time.sleep(0.5)


@pytest.fixture
def label_studio(label_studio_template: Template, tmp_path: Path):
    """Start a copy of the migrated server: ``label_studio(document_root=..., port=None)`` -> LabelStudioServer.

    Every server started this way is stopped (SIGTERM) when the test ends, pass or fail.
    """
    servers: list[LabelStudioServer] = []

    def start(document_root: Path, port: int | None = None) -> LabelStudioServer:
        data_dir = tmp_path / f"label-studio-{len(servers)}"
        tic = time.perf_counter()
        shutil.copytree(label_studio_template.data_dir, data_dir)
        copy_s = time.perf_counter() - tic
        server = start_server(data_dir, Path(document_root).resolve(), port=port)
        server.start_s += copy_s
        server.tokens = dict(label_studio_template.tokens)
        servers.append(server)
        _wait_for_token(server.url, server.tokens["admin"])
        return server

    yield start
    for server in servers:
        server.stop()
