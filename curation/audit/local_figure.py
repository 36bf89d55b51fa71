"""The picture of a local shortcut finding: its heat map over a sample frame, for the HTML report.

Hot is where the class's clips differ from their camera's usual picture more than the other clips do; the box is
the marked area the finding names. The frame is one of the clips that carry the mark (decoded from its proxy);
when that clip cannot be read, the clip's cached still picture stands in, and failing that a grey field.

Example::

    figure = local_shortcut_figure(project, result.flagged[0])
    figure["data_uri"]   # "data:image/png;base64,..." for an <img src>
    figure["text"]       # the finding's message, shown beside it
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import numpy as np

from curation.errors import CliptuneError, VideoError

if TYPE_CHECKING:
    from curation.records.store import Project

MIN_WIDTH = 320  # small frames are scaled up so the mark is visible in the report


def _sample_frame(project: Project, clip_id: int | None) -> tuple[np.ndarray, str]:
    """An RGB frame of the clip (its middle), its cached still picture, or grey; and which it is."""
    from sqlalchemy import select

    from curation.media.features import load_features
    from curation.media.regions import REGIONS_VERSION, decode_maps
    from curation.media.video import sample_frames
    from curation.records.store import Clip

    if clip_id is not None:
        with project.session() as session:
            clip = session.scalars(select(Clip).where(Clip.id == clip_id)).first()
        if clip is not None:
            proxy = project.path / clip.proxy_path if clip.proxy_path else None
            path, start, end = ((proxy, 0.0, None) if proxy is not None and proxy.exists()
                                else (clip.source_path, clip.start_s, clip.end_s))
            try:
                return sample_frames(path, num_frames=1, start_s=start, end_s=end)[0], f"clip {clip_id}, middle frame"
            except (VideoError, OSError, ValueError):
                pass
        cached = load_features(project, version=REGIONS_VERSION).get(clip_id)
        if cached is not None:
            return decode_maps(cached)["still"], f"clip {clip_id}, cached still picture (media unreadable)"
    return np.full((96, 128, 3), 128, np.uint8), "no readable sample clip"


def heat_overlay(frame: np.ndarray, heat: np.ndarray, box: list[float] | None) -> np.ndarray:
    """RGB ``frame`` with ``heat`` (uint8, any size) blended on in a colour scale (more heat, more opaque) and the
    box (shares of width and height) outlined."""
    import cv2

    height, width = frame.shape[:2]
    if width < MIN_WIDTH:
        factor = MIN_WIDTH / width
        width, height = MIN_WIDTH, int(round(height * factor))
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_NEAREST)
    level = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
    colours = cv2.cvtColor(cv2.applyColorMap(level, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB).astype(np.float32)
    weight = (0.15 + 0.6 * level.astype(np.float32) / 255.0)[..., None]
    picture = np.clip(frame.astype(np.float32) * (1 - weight) + colours * weight, 0, 255).astype(np.uint8)
    if box is not None:
        x0, y0 = int(box[0] * width) - 2, int(box[1] * height) - 2
        x1, y1 = int(np.ceil(box[2] * width)) + 1, int(np.ceil(box[3] * height)) + 1
        cv2.rectangle(picture, (x0 - 1, y0 - 1), (x1 + 1, y1 + 1), (0, 0, 0), 1)
        cv2.rectangle(picture, (x0, y0), (x1, y1), (255, 255, 255), 1)
    return picture


def local_shortcut_figure(project: Project, finding: dict[str, Any]) -> dict[str, Any]:
    """What the HTML report shows for one local shortcut finding (an item of ``check_local_shortcuts(...).flagged``):
    ``png`` (bytes), ``data_uri`` (the PNG as ``data:image/png;base64,...``), ``text`` (the finding's message),
    ``caption`` (which frame is under the heat map) and ``clip_id`` (the sample clip, or None)."""
    import cv2

    from curation.media.features import decode_png

    if not isinstance(finding, dict) or finding.get("kind") != "region" or "heat_png" not in finding:
        raise CliptuneError("local_shortcut_figure takes a finding of check_local_shortcuts (kind 'region')")
    frame, source = _sample_frame(project, finding.get("sample_clip"))
    picture = heat_overlay(frame, decode_png(finding["heat_png"]), finding.get("box"))
    ok, data = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 picture
        raise CliptuneError("cannot encode the heat map picture")
    png = data.tobytes()
    return {"png": png, "data_uri": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
            "text": finding["message"], "caption": f"where {finding['field']}={finding['value']} differs: {source}",
            "clip_id": finding.get("sample_clip")}
