"""Footage for the local-shortcut check: fixed cameras that differ in brightness, colour and scene, people walking
through every clip, per-clip lighting drift, and a static mark (a logo: a coloured square with a light inner
stroke) drawn on chosen clips, in a chosen corner, at a chosen share of the picture.

Unlike curation.media.synthetic there is no clock and no badge reader: the only thing that can tell the classes
apart is what the caller plants. Labels are the caller's too (``labels_jsonl``), so one set of videos serves
several label assignments (a mark that follows a class, or one spread evenly over all classes).

Example::

    clips = write_sample(tmp / "clips", n_cameras=6, clips_per_camera=10, marked={3, 7}, seed=1)
    clips[3]  # {"file": "CAM-0/CAM-0_003.mp4", "camera": "CAM-0", "index": 3, "marked": True}
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curation.media.video import write_video

FPS = 8.0
DURATION_S = 2.5
SIZES = [(128, 96), (160, 120), (144, 108), (120, 90), (160, 96), (128, 72)]
MARK_COLOUR = (235, 150, 20)  # orange: a typical broadcaster's corner logo


@dataclass(frozen=True)
class Mark:
    corner: str = "bottom-right"  # top-left, top-right, bottom-left, bottom-right
    share: float = 0.005  # of the picture's area
    margin: float = 0.03  # gap to the picture's edges, share of the width / height

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), end exclusive: a square of ``share`` of the picture (rounded up to whole pixels)."""
        side = int(np.ceil(np.sqrt(self.share * width * height)))
        mx, my = max(1, round(self.margin * width)), max(1, round(self.margin * height))
        x0 = mx if "left" in self.corner else width - mx - side
        y0 = my if "top" in self.corner else height - my - side
        return x0, y0, x0 + side, y0 + side


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """One camera's scene: wall and floor in its own colours and brightness, texture, fixed objects, a door."""
    import cv2

    level = rng.uniform(0.45, 1.25)  # some cameras dim, some bright
    wall, floor = rng.uniform(70, 190, 3) * level, rng.uniform(50, 150, 3) * level
    picture = np.empty((height, width, 3), np.float32)
    horizon = int(height * rng.uniform(0.45, 0.65))
    picture[:horizon], picture[horizon:] = wall, floor
    picture += cv2.GaussianBlur(rng.normal(0, 16, (height, width, 3)).astype(np.float32), (0, 0), 1.2)
    for _ in range(5):
        x, y = int(rng.integers(0, width - 10)), int(rng.integers(0, height - 10))
        cv2.rectangle(picture, (x, y), (x + int(rng.integers(5, 22)), y + int(rng.integers(5, 18))),
                      rng.uniform(0, 255, 3).tolist(), -1)
    door_x = int(rng.uniform(0.25, 0.75) * width)
    cv2.rectangle(picture, (door_x - width // 14, horizon - int(height * 0.4)), (door_x + width // 14, horizon),
                  rng.uniform(30, 110, 3).tolist(), -1)
    return np.clip(picture, 0, 255)


def render(base: np.ndarray, rng: np.random.Generator, mark: Mark | None) -> np.ndarray:
    """Frames of one clip: 1-3 people crossing anywhere (corners included), the clip's lighting, the mark on top."""
    import cv2

    height, width = base.shape[:2]
    gain, offset = rng.uniform(0.9, 1.1), rng.uniform(-10, 10)  # time of day: each clip lit a little differently
    people = [{"x0": rng.uniform(-0.1, 1.1), "x1": rng.uniform(-0.1, 1.1), "y": rng.uniform(0.35, 1.0),
               "t0": rng.uniform(-0.5, DURATION_S - 0.5), "walk": rng.uniform(1.0, 2.5),
               "colour": rng.uniform(20, 235, 3).tolist(), "size": rng.uniform(0.8, 1.3)}
              for _ in range(int(rng.integers(1, 4)))]
    frames = []
    for index in range(int(round(DURATION_S * FPS))):
        t = index / FPS
        picture = base * gain + offset
        for person in people:
            progress = (t - person["t0"]) / person["walk"]
            if not 0 <= progress <= 1:
                continue
            x = int((person["x0"] + (person["x1"] - person["x0"]) * progress) * width)
            y = int(person["y"] * height)
            w, h = int(8 * person["size"] * height / 96), int(26 * person["size"] * height / 96)
            cv2.rectangle(picture, (x - w // 2, y - h), (x + w // 2, y), person["colour"], -1)
            cv2.circle(picture, (x, y - h - w // 2), max(2, w // 2), (190, 160, 130), -1)
        if mark is not None:  # burned in after the lighting: an overlay is not lit by the scene
            x0, y0, x1, y1 = mark.box(width, height)
            picture[y0:y1, x0:x1] = MARK_COLOUR
            inset = max(1, (x1 - x0) // 4)
            cv2.rectangle(picture, (x0 + inset, y0 + inset), (x1 - 1 - inset, y1 - 1 - inset), (250, 250, 250), 1)
        picture += rng.normal(0, 2.0, picture.shape).astype(np.float32)
        frames.append(np.clip(picture, 0, 255).astype(np.uint8))
    return np.stack(frames)


def write_sample(out: Path, *, n_cameras: int, clips_per_camera: int, marked: set[int] | frozenset[int],
                 mark: Mark | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Write ``n_cameras * clips_per_camera`` clips (numbered camera by camera) and ``cameras.csv``; clips whose
    number is in ``marked`` carry ``mark``. The same seed gives the same scenes and people with or without marks."""
    mark = mark or Mark()
    rng = np.random.default_rng(seed)
    bases = [background(rng, *SIZES[c % len(SIZES)]) for c in range(n_cameras)]
    clips = []
    for index in range(n_cameras * clips_per_camera):
        camera = index // clips_per_camera
        name = f"CAM-{camera}"
        file = f"{name}/{name}_{index:03d}.mp4"
        frames = render(bases[camera], np.random.default_rng([seed, index]), mark if index in marked else None)
        write_video(out / file, frames, FPS)
        clips.append({"file": file, "camera": name, "index": index, "marked": index in marked})
    with open(out / "cameras.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "camera"])
        writer.writerows([c["file"], c["camera"]] for c in clips)
    return clips


def labels_jsonl(path: Path, clips: list[dict[str, Any]], events: list[str]) -> Path:
    """Answers of one annotator giving each clip its event (the other fields filled consistently)."""
    lines = []
    for clip, event in zip(clips, events, strict=True):
        persons = 0 if event == "NO_ACTIVITY" else 1
        badges = 1 if event in ("NORMAL_ENTRY", "TAILGATING") else 0
        fields = {"event": event, "persons": persons + (event == "TAILGATING"), "badge_events": badges,
                  "door": 1, "time": "12:00"}
        lines.append(json.dumps({"clip": clip["file"], "annotator": "gt", "fields": fields}) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path
