"""People in a project: annotators, reviewers, leads. Passwords are stored as salted scrypt hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

from sqlalchemy import select

from curation.errors import StoreError
from curation.records.store import ROLES, Event, Project, User

# scrypt parameters: ~50 ms per check on this class of machine; stored with the hash so they can change.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    encode = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"


def check_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, n, r, p, salt, digest = stored.split("$")
    expected = base64.b64decode(digest)
    actual = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
    )
    return hmac.compare_digest(actual, expected)


def add_user(project: Project, name: str, role: str, password: str | None = None) -> User:
    """Add a person. ``password`` may be None for accounts made by imports (they cannot log in yet)."""
    if not NAME_PATTERN.match(name):
        raise StoreError(f"user name {name!r}: use letters, digits and _ . @ - (at most 100 characters)")
    if role not in ROLES:
        raise StoreError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    if password is not None and len(password) < 8:
        raise StoreError("password: use at least 8 characters")
    with project.write() as session:
        if session.scalar(select(User).where(User.name == name)) is not None:
            raise StoreError(f"user {name!r} already exists")
        user = User(name=name, role=role, password_hash=hash_password(password) if password else None)
        session.add(user)
        session.add(Event(action="user_add", detail={"name": name, "role": role}))
    return user


def get_user(project: Project, name: str) -> User | None:
    with project.session() as session:
        return session.scalar(select(User).where(User.name == name))


def get_or_create_user(project: Project, name: str, role: str = "annotator") -> User:
    """The named user, created without a password if new (imports: unknown annotators become accounts)."""
    user = get_user(project, name)
    if user is not None:
        return user
    try:
        return add_user(project, name, role)
    except StoreError:
        # Another writer created it between our read and write.
        user = get_user(project, name)
        if user is None:
            raise
        return user


def authenticate(project: Project, name: str, password: str) -> User | None:
    """The user if name and password match an active account, else None (no hint which one was wrong)."""
    user = get_user(project, name)
    if user is None or not user.active:
        check_password(password, hash_password("timing-equaliser"))
        return None
    return user if check_password(password, user.password_hash) else None


def list_users(project: Project) -> list[User]:
    with project.session() as session:
        return list(session.scalars(select(User).order_by(User.id)))
