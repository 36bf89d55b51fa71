"""Who is who in Label Studio: each Label Studio user id, once seen, is filed under one cliptune name for good.

Label Studio's exports name an annotator in two ways: with details (``{"id": 2, "email": "bo@x", ...}``, what
``pull`` asks for) or as a bare id (``2``, what the Export button writes). Without a memory, a ``--user
bo@x=bo`` given once would be forgotten by the next plain pull, which would file the same person under a
second account (``bo@x``) — two answers from one person per clip, read as agreement. So every Label Studio
user met in an import is remembered by user id, with the cliptune name it was filed under and the e-mail and
username last seen, in the project's event log (``label_studio_users`` events, as ``push`` remembers its
tasks); the latest event per id wins, and the log keeps every change.

How a name is chosen, first match wins:

1. ``--user KEY=NAME`` where KEY is the user's id, e-mail or username (a mapping given again with another
   name changes the remembered one, and the change is reported);
2. the name remembered for the user id;
3. today's default for a user with details: the e-mail, else the username (remembered from then on).

A bare id that is neither mapped nor remembered cannot be named and fails that annotation alone. User ids
are those of one Label Studio server: a project pulled from two servers should map its users explicitly.

Example::

    names = UserNames(project, {"bo@lobby.test": "bo"})
    names.resolve({"id": 2, "email": "bo@lobby.test"})    # "bo"
    names.resolve(2)                                        # "bo" (the same person as a bare id)
    names.remember(source="pull")                           # stored: a later plain pull says "bo" too
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from annotate_ui.label_studio.config import LabelStudioError
from curation.errors import CliptuneError
from curation.records.store import Event, Project
from curation.records.users import NAME_PATTERN

USERS_EVENT = "label_studio_users"


def remembered_users(project: Project) -> dict[int, dict[str, Any]]:
    """``{label studio user id: {"name", "email", "username"}}`` as remembered by earlier imports."""
    with project.session() as session:
        details = session.scalars(select(Event.detail).where(Event.action == USERS_EVENT).order_by(Event.id))
        users: dict[int, dict[str, Any]] = {}
        for detail in details:
            for user_id, entry in (detail.get("users") or {}).items():
                users[int(user_id)] = dict(entry)
    return users


def _user_id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class UserNames:
    """Resolves Label Studio users to cliptune names for one import; :meth:`remember` stores what it learned."""

    def __init__(self, project: Project, user_map: dict[str, str] | None = None):
        user_map = {str(key).strip(): str(name).strip() for key, name in (user_map or {}).items()}
        bad = sorted(name for name in user_map.values() if not NAME_PATTERN.match(name))
        if bad:
            raise CliptuneError(f"user map: {bad} are not valid user names (letters, digits and _ . @ -)")
        self.project = project
        self.user_map = user_map
        self.known = remembered_users(project)
        self.learned: dict[int, dict[str, Any]] = {}  # new or changed entries, stored by remember()
        self.changes: list[dict[str, Any]] = []  # {"user_id", "email", "from", "to"}
        self.matched: set[str] = set()  # map keys that met a Label Studio user
        for user_id, entry in list(self.known.items()):  # a mapping may name a user this export does not show
            name = self._mapped(user_id, entry.get("email"), entry.get("username"))
            if name is not None:
                self._learn(user_id, name, entry.get("email"), entry.get("username"))

    def _mapped(self, user_id: int | None, email: Any, username: Any) -> str | None:
        keys = [str(key) for key in (user_id, email, username) if key not in (None, "")]
        names = {self.user_map[key] for key in keys if key in self.user_map}
        if len(names) > 1:
            raise LabelStudioError(f"--user maps Label Studio user {' / '.join(keys)} to {sorted(names)}: give "
                                   "one name per person")
        self.matched.update(key for key in keys if key in self.user_map)
        return names.pop() if names else None

    def _learn(self, user_id: int, name: str, email: Any, username: Any) -> None:
        before = self.learned.get(user_id) or self.known.get(user_id)
        entry = {"name": name, "email": email if isinstance(email, str) else (before or {}).get("email"),
                 "username": username if isinstance(username, str) else (before or {}).get("username")}
        if before == entry:
            return
        if before is not None and before["name"] != name:
            self.changes.append({"user_id": user_id, "email": entry["email"], "from": before["name"], "to": name})
        self.learned[user_id] = entry

    def current(self, user_id: int) -> dict[str, Any] | None:
        return self.learned.get(user_id) or self.known.get(user_id)

    def resolve(self, completed_by: Any) -> str:
        """The cliptune name for an annotation's ``completed_by`` (a user object or a bare id)."""
        user_id = _user_id(completed_by)
        if user_id is not None:
            entry = self.current(user_id)
            name = self._mapped(user_id, *((entry["email"], entry["username"]) if entry else (None, None)))
            if name is None and entry is None:
                raise LabelStudioError(f"'completed_by' is the bare user id {completed_by}, a Label Studio user "
                                       f"cliptune has not met: pull once with cliptune (it records who is who) or "
                                       f"map it, e.g. --user {completed_by}=ana")
            name = name or entry["name"]
            self._learn(user_id, name, None, None)
            return name
        if not isinstance(completed_by, dict):
            raise LabelStudioError(f"'completed_by' must be a user object or id, not {type(completed_by).__name__}")
        user_id, email, username = _user_id(completed_by.get("id")), completed_by.get("email"), \
            completed_by.get("username")
        name = self._mapped(user_id, email, username)
        entry = self.current(user_id) if user_id is not None else None
        if name is None and entry is not None:
            name = entry["name"]
        if name is None:
            name = next((k for k in (email, username) if isinstance(k, str) and k), None)
            if name is None:
                raise LabelStudioError("'completed_by' has no email or username; map its id with --user ID=NAME")
            if not NAME_PATTERN.match(name):
                raise LabelStudioError(f"Label Studio user {name!r} is not a valid cliptune user name (letters, "
                                       f"digits and _ . @ -): map it with --user {name}=NAME")
        if user_id is not None:
            self._learn(user_id, name, email, username)
        return name

    @property
    def unmatched(self) -> list[str]:
        """``--user`` keys that met no Label Studio user (neither in the data nor remembered)."""
        return sorted(set(self.user_map) - self.matched)

    def remember(self, **context: Any) -> None:
        """Store the new and changed identities (one event), so later imports file them the same way."""
        if not self.learned:
            return
        self.project.log(USERS_EVENT, users={str(k): v for k, v in sorted(self.learned.items())},
                         changed=self.changes, **context)
        self.known.update(self.learned)
        self.learned = {}
