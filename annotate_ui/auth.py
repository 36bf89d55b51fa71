"""Log in, sessions and roles for the browser app.

A login (name + password, checked by :func:`curation.records.users.authenticate`) gets a random token kept in
this server's memory and in a browser cookie, so reloading the page or opening a link keeps you logged in; the token
expires after ``CLIPTUNE_SESSION_IDLE_S`` seconds without activity (8 hours by default) and when the server restarts.
The role is read from the project on every page run, so a deactivated account is logged out at its next click.

Example (inside a page)::

    me = require_role("reviewer", "lead")   # stops the page with a message for anyone else
    project = open_project()
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import streamlit as st

from curation.records.store import ROLES, Project
from curation.records.users import authenticate, get_user

IDLE_TIMEOUT_S = 8 * 3600.0
LOGIN_KEY = "_cliptune_login"


def idle_timeout_s() -> float:
    return float(os.environ.get("CLIPTUNE_SESSION_IDLE_S", IDLE_TIMEOUT_S))


@dataclass
class Login:
    user: str
    role: str
    token: str


class SessionStore:
    """Tokens of logged-in people, expiring after ``idle_s`` seconds without activity. Thread-safe."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def create(self, user: str, now: float | None = None) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (user, time.time() if now is None else now)
        return token

    def touch(self, token: str | None, idle_s: float, now: float | None = None) -> str | None:
        """The user of a live token, refreshing its idle clock; None for an unknown or expired token."""
        now = time.time() if now is None else now
        with self._lock:
            entry = self._tokens.get(token or "")
            if entry is None:
                return None
            if now - entry[1] > idle_s:
                del self._tokens[token]
                return None
            self._tokens[token] = (entry[0], now)
            return entry[0]

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._tokens.pop(token or "", None)


def project_path() -> Path | None:
    """The project folder: ``$CLIPTUNE_PROJECT`` (what `cliptune ui` sets) or ``streamlit run … -- PROJECT``."""
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    value = os.environ.get("CLIPTUNE_PROJECT") or (args[0] if args else None)
    return Path(value) if value else None


@lru_cache(maxsize=4)
def project_at(path: str) -> Project:
    """The project at an absolute folder path, opened once per server process: one engine, shared by the pages
    and the clip route (media.py), which runs outside any page."""
    return Project.open(path)


def open_project() -> Project:
    path = project_path()
    if path is None:
        st.error("No project: start the app with `cliptune ui PROJECT`.")
        st.stop()
    return project_at(str(path.resolve()))


# One store per server process, shared by the pages and the clip route (media.py), which runs outside any page.
_SESSIONS = SessionStore()


def session_store() -> SessionStore:
    return _SESSIONS


def cookie_name() -> str:
    # One cookie per port: two apps on one machine (two projects) keep their logins apart.
    return f"cliptune_session_{st.get_option('server.port')}"


def current_login() -> Login | None:
    """The logged-in person of this browser session, restored from the cookie after a reload; None if nobody.

    Expires the login after the idle timeout and re-reads the role from the project (a changed role applies now).
    """
    state = st.session_state.get(LOGIN_KEY)
    now = time.time()
    if state is None:
        token = st.context.cookies.get(cookie_name())
        user = session_store().touch(token, idle_timeout_s(), now)
        if user is None:
            return None
        state = Login(user, "", token)
    elif session_store().touch(state.token, idle_timeout_s(), now) is None:
        st.session_state.pop(LOGIN_KEY, None)
        st.session_state["expired"] = True
        return None
    row = get_user(open_project(), state.user)
    if row is None or not row.active or row.role not in ROLES:
        logout()
        return None
    state.role = row.role
    st.session_state[LOGIN_KEY] = state
    return state


def login(name: str, password: str) -> Login | None:
    """Check name and password; on success start a session (and log the event). None when they do not match."""
    project = open_project()
    user = authenticate(project, name.strip(), password)
    if user is None:
        project.log("login_failed", name.strip()[:100])
        return None
    state = Login(user.name, user.role, session_store().create(user.name))
    st.session_state[LOGIN_KEY] = state
    st.session_state.pop("expired", None)
    project.log("login", user.name)
    return state


def logout() -> None:
    state = st.session_state.pop(LOGIN_KEY, None)
    if state is not None:
        session_store().drop(state.token)
    for key in list(st.session_state):
        del st.session_state[key]
    st.session_state["logged_out"] = True


def cookie_html(state: Login | None) -> str:
    """A script that stores (or clears) the session cookie in the browser."""
    name = cookie_name()
    if state is None:
        return f'<script>document.cookie = "{name}=; path=/; max-age=0; SameSite=Strict";</script>'
    max_age = int(idle_timeout_s())
    return f'<script>document.cookie = "{name}={state.token}; path=/; max-age={max_age}; SameSite=Strict";</script>'


def require_role(*roles: str) -> Login:
    """The logged-in person if their role is one of ``roles`` (any role when none given); else stop the page."""
    state = current_login()
    if state is None:
        st.warning("Please log in.")
        st.stop()
    if roles and state.role not in roles:
        st.error(f"This page is for {' and '.join(role + 's' for role in roles)}; you are logged in as "
                 f"{state.role} {state.user}.")
        st.stop()
    return state
