"""Clip proxies served straight from disk at ``/clip/{id}.mp4``: HTTP Range requests, ETag, browser caching.

``st.video`` would read every proxy into memory and hash it on every page run, and its responses carry no cache
headers. Served from disk instead, a long proxy streams (the browser asks for byte ranges as it plays), and the
next clip can be fetched into the browser cache while the current one is labelled, so it plays as soon as Submit
is pressed. Only a logged-in browser session gets a clip (the session cookie), and an annotator only the clips
assigned to them.

Example::

    app = st.App("app.py", routes=clip_routes())   # what annotate_ui/asgi.py does
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from curation.records.store import Assignment, Clip, Project, User

CACHE_SECONDS = 3600


def clip_file(project: Project, clip_id: int, user: str) -> Path | None:
    """The proxy of ``clip_id`` if ``user`` may watch it (annotators: assigned clips only), else None."""
    with project.session() as session:
        row = session.execute(select(User.id, User.role, User.active).where(User.name == user)).first()
        clip = session.get(Clip, clip_id)
        if row is None or not row.active or clip is None or not clip.proxy_path:
            return None
        if row.role == "annotator":
            assigned = session.scalar(select(Assignment.id).where(Assignment.clip_id == clip_id,
                                                                  Assignment.user_id == row.id))
            if assigned is None:
                return None
        path = project.path / clip.proxy_path
    return path if path.is_file() else None


def clip_endpoint(request: Request) -> Response:
    # A plain (sync) endpoint: Starlette runs it in its thread pool, so the database query does not block the loop.
    from annotate_ui.auth import cookie_name, idle_timeout_s, project_at, project_path, session_store

    user = session_store().touch(request.cookies.get(cookie_name()), idle_timeout_s())
    if user is None:
        return PlainTextResponse("log in first", status_code=401)
    folder = project_path()
    path = clip_file(project_at(str(folder.resolve())), request.path_params["clip_id"], user) if folder else None
    if path is None:
        return PlainTextResponse("no such clip for you", status_code=404)
    return FileResponse(path, media_type="video/mp4", headers={"Cache-Control": f"private, max-age={CACHE_SECONDS}"})


def clip_routes() -> list[BaseRoute]:
    return [Route("/clip/{clip_id:int}.mp4", clip_endpoint, methods=["GET", "HEAD"])]
