"""Start the browser app: ``streamlit run`` bound to 127.0.0.1, headless, no usage statistics, no file watcher.

Example::

    process = start(Path("projects/lobby"), port=8501)   # returns once the app answers on /_stcore/health
    ...
    process.terminate()
    serve("projects/lobby")                               # foreground, until Ctrl+C (what `cliptune ui` does)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from curation.errors import CliptuneError
from curation.records.store import Project

# The ASGI entry wraps app.py and adds the route that streams clip proxies from disk.
APP = Path(__file__).resolve().parent / "asgi.py"
DEFAULT_PORT = 8501


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def command(project: str | os.PathLike, *, port: int = DEFAULT_PORT, address: str = "127.0.0.1") -> list[str]:
    """The ``streamlit run`` command line. Every setting that keeps the app local is explicit here."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", address,
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--browser.serverAddress", address,
        "--client.toolbarMode", "minimal",
        "--theme.base", "light",
        "--", str(Path(project).resolve()),
    ]


def _environment(project: Path, idle_s: float | None) -> dict[str, str]:
    env = dict(os.environ, CLIPTUNE_PROJECT=str(project.resolve()), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    if idle_s is not None:
        env["CLIPTUNE_SESSION_IDLE_S"] = str(idle_s)
    return env


def _check(project: str | os.PathLike, port: int) -> Path:
    path = Path(project)
    Project.open(path)  # a clear error now rather than a broken page later
    if not 1 <= port <= 65535:
        raise CliptuneError(f"--port {port}: choose a port between 1 and 65535")
    return path


def wait_ready(url: str, process: subprocess.Popen | None = None, timeout_s: float = 60.0) -> None:
    """Wait until ``url``/_stcore/health answers ok; raise if the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise CliptuneError(f"the app stopped at start (exit {process.returncode}); is the port free?")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise CliptuneError(f"the app did not answer on {url} within {timeout_s:.0f} s")


def start(
    project: str | os.PathLike,
    *,
    port: int | None = None,
    address: str = "127.0.0.1",
    idle_s: float | None = None,
    log: str | os.PathLike | None = None,
    timeout_s: float = 60.0,
) -> tuple[subprocess.Popen, str]:
    """Start the app in the background and wait until it is up: (process, url). ``port=None`` picks a free one."""
    port = free_port(address) if port is None else port
    path = _check(project, port)
    output = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    process = subprocess.Popen(command(path, port=port, address=address), env=_environment(path, idle_s),
                               stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://{address}:{port}"
    try:
        wait_ready(url, process, timeout_s)
    except BaseException:
        process.terminate()
        process.wait(10)
        raise
    return process, url


def serve(project: str | os.PathLike, *, port: int = DEFAULT_PORT, address: str = "127.0.0.1",
          idle_s: float | None = None) -> int:
    """Run the app in the foreground until Ctrl+C or SIGTERM (which also stop the app); returns its exit status."""
    path = _check(project, port)
    process = subprocess.Popen(command(path, port=port, address=address), env=_environment(path, idle_s))

    def _stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
