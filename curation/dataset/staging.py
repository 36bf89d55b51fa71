"""Write a folder beside its final place and swap it in, leaving nothing behind when a run fails or is killed.

An export is written to ``OUT/../.OUT.partial-PID`` and renamed to ``OUT`` when complete; a previous ``OUT`` is
first renamed to ``.OUT.old-PID`` and removed once the new one is in place. A run that raises, or is stopped by
SIGINT or SIGTERM, removes its own staging folder; a run killed outright (SIGKILL, power cut) cannot, so the next
run into the same ``OUT`` removes the folders of every PID that no longer runs (a live PID's folder belongs to a
concurrent run and is left alone), and puts back an earlier export that a killed swap had moved aside.

Example::

    with staged(Path("exports/v1"), overwrite=True) as staging:
        (staging / "export.json").write_text("{}")
    # exports/v1/export.json now exists; no .v1.partial-* or .v1.old-* folder is left
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from curation.errors import CliptuneError
from curation.media.ingest import pid_alive

MARKER = "export.json"  # a folder holding it is an earlier export and may be replaced with --overwrite


def _pid_of(folder: Path, kind: str) -> int | None:
    pid = folder.name.rpartition(f".{kind}-")[2]
    return int(pid) if pid.isdigit() else None


def remove_stale(out: Path) -> list[Path]:
    """Remove the staging and retired folders of dead runs into ``out``; return the folders removed.

    A dead run's retired folder is the previous export when the run died between moving it aside and moving the
    new one in: it goes back to ``out`` if ``out`` is missing."""
    removed: list[Path] = []
    for kind in ("old", "partial"):  # retired first: a restored export must not be mistaken for a stale one
        for folder in sorted(out.parent.glob(f".{out.name}.{kind}-*")):
            pid = _pid_of(folder, kind)
            if pid is None or pid == os.getpid() or pid_alive(pid):
                continue
            if kind == "old" and not out.exists() and (folder / MARKER).exists():
                folder.rename(out)
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise CliptuneError(f"{out} is a file; give a folder for the export")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise CliptuneError(f"{out} is not empty and is not a cliptune export; choose an empty or new folder")
        if not overwrite:
            raise CliptuneError(f"{out} already holds an export; pass --overwrite to replace it")


class _Terminated(BaseException):
    """SIGTERM arrived: unwind like KeyboardInterrupt so clean-up code runs, then die by the signal."""


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    # Signal handlers can only be set from the main thread, and a handler someone else installed is theirs to keep.
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise _Terminated

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # what the default action would have done, now that we cleaned up
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def staged(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty staging folder for ``out``; on a clean exit it replaces ``out``, on any other it is removed."""
    remove_stale(out)  # first: it may put back an export that --overwrite must then be asked for
    _check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    with _sigterm_unwinds():
        try:
            if staging.exists():
                shutil.rmtree(staging)
            staging.mkdir()
            yield staging
            _swap_in(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _swap_in(staging: Path, out: Path) -> None:
    if not out.exists():
        staging.rename(out)
        return
    retired = out.parent / f".{out.name}.old-{os.getpid()}"
    out.rename(retired)
    try:
        staging.rename(out)
    except BaseException:
        retired.rename(out)  # the earlier export stays where it was
        raise
    shutil.rmtree(retired)
