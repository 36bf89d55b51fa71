"""The synthetic sample: door-camera clips with known answers, for the demo, the tests and the trainer.

Each camera looks at a door with a painted number and a badge reader beside it. In a clip, 0–3 people go through
the door (and sometimes someone walks past it, which does not count); the reader flashes green for badge events;
the clock is burned into the image; the scene is lit by day or, at night, grey and dark as from an infrared
camera. The cameras differ as real ones do: size (one odd), frame rate (one variable), container (one WebM).

The answers follow the surveillance rubric (``rubrics/surveillance_alert.yaml``) and are written to
``ground_truth.jsonl``. Two switches plant problems for the audit to find:

- ``shortcut="night_intrusion"``: every INTRUSION is filmed at night and nothing else is, so brightness alone
  predicts the label;
- ``near_duplicates=N``: N near-copies of existing clips (re-encoded smaller, trimmed, or brightened).

Example::

    info = generate_sample("data/sample", n_clips=40, random_state=0)
    # data/sample/clips/CAM-1/CAM-1_0000.mp4 ..., cameras.csv, ground_truth.jsonl
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from curation.media.video import write_video

EVENTS = ("NO_ACTIVITY", "NORMAL_ENTRY", "TAILGATING", "INTRUSION")
EVENT_SHARES = (0.35, 0.40, 0.13, 0.12)  # TAILGATING and INTRUSION are the rare events
SHORTCUTS = ("night_intrusion",)
FLASH_S = 0.4  # how long the badge reader shows green
WALK_S = 1.4  # how long a person takes from the floor to the door


@dataclass(frozen=True)
class Camera:
    name: str
    site: str
    door: int
    width: int
    height: int
    fps: float
    extension: str = ".mp4"
    variable_frame_rate: bool = False
    wall: tuple[int, int, int] = (180, 170, 150)
    door_x: float = 0.45  # door centre as a share of the width


CAMERAS = (
    Camera("CAM-1", "north", 14, 160, 120, 10.0, wall=(186, 176, 150), door_x=0.40),
    Camera("CAM-2", "north", 3, 176, 144, 12.0, variable_frame_rate=True, wall=(150, 170, 186), door_x=0.55),
    Camera("CAM-3", "south", 27, 161, 97, 10.0, extension=".webm", wall=(170, 186, 160), door_x=0.50),
    Camera("CAM-4", "south", 8, 192, 108, 15.0, wall=(190, 160, 160), door_x=0.35),
)


@dataclass
class SampleInfo:
    out_dir: Path
    n_clips: int
    near_duplicates: int
    shortcut: str | None
    random_state: int
    events: dict[str, int] = field(default_factory=dict)
    night: int = 0
    cameras: list[str] = field(default_factory=list)


@dataclass
class Scene:
    """What happens in one clip: the answer and the timeline that shows it."""

    camera: Camera
    event: str
    persons: int
    badge_events: int
    start: datetime
    duration_s: float
    night: bool
    entries_s: list[float]
    flashes_s: list[float]
    passer_s: float | None  # someone walking past the door (a distractor), or None
    colours: list[tuple[int, int, int]]

    @property
    def fields(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "persons": self.persons,
            "badge_events": self.badge_events,
            "door": self.camera.door,
            "time": self.start.strftime("%H:%M"),
        }


def draw_scene(rng: np.random.Generator, camera: Camera, shortcut: str | None, when: datetime) -> Scene:
    """A random scene: the event, its counts, and when each person and badge flash appears."""
    event = str(rng.choice(EVENTS, p=EVENT_SHARES))
    if event == "NO_ACTIVITY":
        persons, badges = 0, 0
    elif event == "NORMAL_ENTRY":
        persons = int(rng.choice([1, 2], p=[0.7, 0.3]))
        badges = persons + int(rng.random() < 0.15)  # now and then someone badges twice
    elif event == "TAILGATING":
        persons = int(rng.choice([2, 3], p=[0.7, 0.3]))
        badges = int(rng.integers(1, persons))
    else:
        persons, badges = int(rng.choice([1, 2], p=[0.8, 0.2])), 0
    if shortcut == "night_intrusion":
        night = event == "INTRUSION"
    else:
        night = bool(rng.random() < 1 / 3)
    hour = int(rng.choice([20, 21, 22, 23, 0, 1, 2, 3, 4, 5])) if night else int(rng.integers(6, 20))
    # Seconds stay below 50 so a clip trimmed by a fraction of a second keeps its hh:mm.
    start = when.replace(hour=hour, minute=int(rng.integers(0, 60)), second=int(rng.integers(0, 50)))
    # Entries at least 1.4 s apart so people can be counted; the first after 0.9 s so badge flashes fit before it.
    # The same length whatever happens (room for 3 people or 4 badge flashes): a length that grew with the number
    # of people would itself be a shortcut to the event.
    duration = 5.6 + float(rng.uniform(0.0, 0.8))
    entries = [0.9 + 1.4 * i + float(rng.uniform(0, 0.2)) for i in range(persons)]
    # A badge flash comes just before the person it admits; extra flashes (double badging) follow the last one.
    flashes = [entries[i] - 0.6 for i in range(min(badges, persons))]
    flashes += [0.9 + 1.4 * (persons + i) - 0.6 for i in range(badges - len(flashes))]
    passer = float(rng.uniform(0.2, duration - 2.0)) if rng.random() < 0.3 else None
    colours = [tuple(int(c) for c in rng.integers(30, 220, 3)) for _ in range(persons + 1)]
    return Scene(camera, event, persons, badges, start, round(duration, 3), night, entries, flashes, passer, colours)


def render_frame(scene: Scene, t: float, rng: np.random.Generator) -> np.ndarray:
    """The camera's image at ``t`` seconds into the clip (RGB uint8)."""
    import cv2

    cam = scene.camera
    w, h = cam.width, cam.height
    frame = np.empty((h, w, 3), np.uint8)
    floor_y = int(h * 0.72)
    frame[:floor_y] = cam.wall
    frame[floor_y:] = (110, 105, 100)
    door_w, door_h = int(w * 0.16), int(h * 0.50)
    x0 = int(w * cam.door_x - door_w / 2)
    y0 = floor_y - door_h
    open_door = any(e + WALK_S - 0.5 <= t <= e + WALK_S + 0.2 for e in scene.entries_s)
    cv2.rectangle(frame, (x0, y0), (x0 + door_w, floor_y), (25, 20, 20) if open_door else (120, 75, 40), -1)
    cv2.putText(frame, str(cam.door), (x0 + 2, y0 - 3), cv2.FONT_HERSHEY_PLAIN, 0.8, (20, 20, 20), 1, cv2.LINE_AA)
    reader = (x0 + door_w + 4, y0 + door_h // 3)
    cv2.rectangle(frame, reader, (reader[0] + 5, reader[1] + 8), (40, 40, 40), -1)
    for index, entry in enumerate(scene.entries_s):
        progress = (t - entry) / WALK_S
        if 0.0 <= progress <= 1.0:  # from the bottom of the frame to the door, getting smaller
            scale = 1.0 - 0.45 * progress
            cx = int(w * cam.door_x + (1 - progress) * w * 0.18 * (-1) ** index)
            cy = int(h - (h - floor_y + 4) * progress - 4)
            _draw_person(frame, cx, cy, scale * h / 120, scene.colours[index])
    if scene.passer_s is not None:
        progress = (t - scene.passer_s) / 2.0
        if 0.0 <= progress <= 1.0:  # across the floor, never through the door
            _draw_person(frame, int(-10 + progress * (w + 20)), int(h * 0.97), 1.1 * h / 120, scene.colours[-1])
    clock = (scene.start + timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S")
    cv2.putText(frame, clock, (2, 9), cv2.FONT_HERSHEY_PLAIN, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    image = frame.astype(np.float32)
    if scene.night:  # infrared at night: grey and dark, noisier
        grey = image @ np.array([0.299, 0.587, 0.114], np.float32)
        image = np.repeat(grey[..., None], 3, axis=2) * 0.5 + 8
        image[:12] = np.maximum(image[:12], frame[:12].astype(np.float32) * (frame[:12] > 200))  # clock stays white
        noise = 7.0
    else:
        noise = 3.0
    image += rng.normal(0.0, noise, image.shape).astype(np.float32)
    frame = np.clip(image, 0, 255).astype(np.uint8)
    # The reader's LED emits light, so it shows at night too: red at rest, green while a badge is read.
    lit = any(f <= t < f + FLASH_S for f in scene.flashes_s)
    cv2.rectangle(frame, (reader[0] + 1, reader[1] + 1), (reader[0] + 4, reader[1] + 4),
                  (60, 240, 80) if lit else (150, 30, 30), -1)
    return frame


def _draw_person(frame: np.ndarray, cx: int, feet_y: int, scale: float, colour: tuple[int, int, int]) -> None:
    import cv2

    body_h, body_w = int(26 * scale), int(7 * scale)
    centre = (cx, feet_y - body_h // 2)
    cv2.ellipse(frame, centre, (max(body_w, 2), max(body_h // 2, 3)), 0, 0, 360, colour, -1)
    cv2.circle(frame, (cx, feet_y - body_h - int(4 * scale)), max(int(5 * scale), 2), (225, 190, 160), -1)


def frame_times(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Presentation times of the frames: regular, or jittered for a variable-frame-rate camera."""
    step = 1.0 / scene.camera.fps
    times = np.arange(0.0, scene.duration_s, step)
    if scene.camera.variable_frame_rate:
        # Real VFR cameras drop and stretch frames: intervals between 0.5 and 2 nominal steps.
        intervals = step * rng.choice([0.5, 1.0, 1.0, 1.0, 2.0], size=len(times))
        times = np.concatenate([[0.0], np.cumsum(intervals)[:-1]])
        times = times[times < scene.duration_s]
    return times


def write_clip(path: Path, frames: list[np.ndarray], times: np.ndarray, camera: Camera, crf: int = 20) -> None:
    codec = "libvpx-vp9" if path.suffix == ".webm" else "libx264"
    write_video(path, frames, camera.fps, codec=codec, crf=crf,
                timestamps_s=times.tolist() if camera.variable_frame_rate else None)


def near_copy(frames: list[np.ndarray], times: np.ndarray, kind: str) -> tuple[list[np.ndarray], np.ndarray]:
    """A near-duplicate of a clip: re-encoded smaller, trimmed at the start, or brighter."""
    import cv2

    if kind == "resized":
        h, w = frames[0].shape[:2]
        size = (max(2, int(w * 0.75)), max(2, int(h * 0.75)))
        return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames], times
    if kind == "trimmed":
        keep = times >= 0.3
        return [f for f, k in zip(frames, keep, strict=True) if k], times[keep] - times[keep][0]
    if kind == "brighter":
        return [np.clip(f.astype(np.int16) + 30, 0, 255).astype(np.uint8) for f in frames], times
    raise ValueError(f"unknown near-copy kind {kind!r}")


NEAR_COPY_KINDS = ("resized", "trimmed", "brighter")


def generate_sample(
    out_dir: str | os.PathLike,
    *,
    n_clips: int = 60,
    random_state: int = 0,
    shortcut: str | None = None,
    near_duplicates: int = 0,
    cameras: tuple[Camera, ...] = CAMERAS,
) -> SampleInfo:
    """Write ``n_clips`` synthetic clips (plus near-copies) with ``cameras.csv`` and ``ground_truth.jsonl``.

    The same ``random_state`` gives the same clips and answers. Files go under ``out_dir/clips/CAMERA/``.
    """
    if n_clips < 1:
        raise ValueError(f"n_clips must be at least 1, got {n_clips}")
    if shortcut is not None and shortcut not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {shortcut!r}; choose one of {', '.join(SHORTCUTS)}")
    if not 0 <= near_duplicates <= n_clips:
        raise ValueError(f"near_duplicates must be between 0 and n_clips ({n_clips}), got {near_duplicates}")
    out = Path(out_dir)
    rng = np.random.default_rng(random_state)
    copies_of = set(rng.choice(n_clips, size=near_duplicates, replace=False).tolist()) if near_duplicates else set()
    day0 = datetime(2026, 3, 2)
    rows: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    copies_made = 0
    for index in range(n_clips):
        camera = cameras[index % len(cameras)]
        scene = draw_scene(rng, camera, shortcut, day0 + timedelta(days=int(rng.integers(0, 14))))
        clip_rng = np.random.default_rng([random_state, index])
        times = frame_times(scene, clip_rng)
        frames = [render_frame(scene, float(t), clip_rng) for t in times]
        relative = f"{camera.name}/{camera.name}_{index:04d}{camera.extension}"
        write_clip(out / "clips" / relative, frames, times, camera)
        versions = [(relative, None)]
        if index in copies_of:
            kind = NEAR_COPY_KINDS[copies_made % len(NEAR_COPY_KINDS)]
            copies_made += 1
            copy_relative = f"{camera.name}/{camera.name}_{index:04d}_{kind}{camera.extension}"
            copy_frames, copy_times = near_copy(frames, times, kind)
            write_clip(out / "clips" / copy_relative, copy_frames, copy_times, camera, crf=28)
            versions.append((copy_relative, relative))
        for file, original in versions:
            rows.append({"file": file, "camera": camera.name, "site": camera.site,
                         "recorded_at": scene.start.isoformat(timespec="seconds")})
            truth.append({"file": file, "fields": scene.fields, "camera": camera.name, "night": scene.night,
                          "passer_by": scene.passer_s is not None, "near_duplicate_of": original})
    with open(out / "cameras.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "camera", "site", "recorded_at"])
        writer.writeheader()
        writer.writerows(rows)
    (out / "ground_truth.jsonl").write_text("".join(json.dumps(r) + "\n" for r in truth), encoding="utf-8")
    originals = [r for r in truth if r["near_duplicate_of"] is None]
    return SampleInfo(
        out_dir=out,
        n_clips=n_clips,
        near_duplicates=near_duplicates,
        shortcut=shortcut,
        random_state=random_state,
        events=dict(Counter(r["fields"]["event"] for r in originals)),
        night=sum(r["night"] for r in originals),
        cameras=sorted({c.name for c in cameras[: min(len(cameras), n_clips)]}),
    )
