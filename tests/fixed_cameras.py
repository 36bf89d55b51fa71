"""A second footage generator, unlike curation.media.synthetic: fixed door cameras with NO burned-in clock and a
static background, two or three people walking to the one door in every clip whatever its label, distinct clips
plus planted copies (the near-duplicate audit's test material; see tests/test_duplicates_content.py).

What makes it hard for a still-picture comparison: every clip of a camera shows the same background, and every
person walks from the floor to the same door, so only who walks (size, clothes), when and along which path tells
two clips apart. What makes it hard for a size-fitted threshold: copies are upscaled as well as downscaled.

Copy kinds (``COPY_KINDS``): upscaled 1.25x / 1.5x / 2x, downscaled 0.5x, re-encoded at crf 38, trimmed (first
0.5-1 s cut), brightened +40 / darkened -40 levels, cropped (3-5 % off two sides), mirrored.

Example::

    truth = generate(tmp / "clips", n_cameras=3, clips_per_camera=8, copies=10, seed=1)
    truth[0]  # {"file": "CAMX-0/CAMX-0_000.mp4", "camera": "CAMX-0", "copy_of": None, "kind": None}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curation.media.video import write_video

COPY_KINDS = ("up1.25", "up1.5", "up2", "down0.5", "crf38", "trim", "bright+40", "bright-40", "crop", "mirror")
FPS = 10.0


@dataclass(frozen=True)
class FixedCamera:
    name: str
    width: int
    height: int
    door_x: float  # door centre, share of the width
    seed: int


def cameras(n: int, seed: int) -> list[FixedCamera]:
    rng = np.random.default_rng(seed)
    # no 0.5x copy 72 pixels wide: decord 0.6 cannot read H.264 of that width (nor 72x56)
    sizes = [(128, 96), (160, 96), (152, 114), (120, 90), (160, 120), (128, 72)]
    return [FixedCamera(f"CAMX-{i}", *sizes[i % len(sizes)], float(rng.uniform(0.3, 0.7)), int(rng.integers(1 << 30)))
            for i in range(n)]


def background(camera: FixedCamera) -> np.ndarray:
    """The camera's static scene: a textured wall and floor, a door, a few fixed objects. No clock."""
    import cv2

    rng = np.random.default_rng(camera.seed)
    h, w = camera.height, camera.width
    wall = rng.uniform(90, 200, 3)
    floor = rng.uniform(60, 150, 3)
    picture = np.empty((h, w, 3), np.float32)
    horizon = int(h * 0.55)
    picture[:horizon] = wall
    picture[horizon:] = floor
    picture += cv2.GaussianBlur(rng.normal(0, 18, (h, w, 3)).astype(np.float32), (0, 0), 1.5)
    for _ in range(4):  # fixed objects: posters, a bench, a bin
        x, y = int(rng.integers(0, w - 12)), int(rng.integers(0, h - 12))
        cv2.rectangle(picture, (x, y), (x + int(rng.integers(6, 20)), y + int(rng.integers(6, 16))),
                      rng.uniform(0, 255, 3).tolist(), -1)
    door_w, door_h = int(w * 0.14), int(h * 0.42)
    x0 = int(camera.door_x * w - door_w / 2)
    cv2.rectangle(picture, (x0, horizon - door_h), (x0 + door_w, horizon), (70, 50, 35), -1)
    return np.clip(picture, 0, 255)


def scene(rng: np.random.Generator, camera: FixedCamera, duration_s: float) -> list[dict[str, Any]]:
    """Two or three people, each walking from a random point on the floor to the door at a random time."""
    people = []
    for _ in range(int(rng.integers(2, 4))):
        walk_s = float(rng.uniform(1.2, 2.2))
        people.append({
            "start_s": float(rng.uniform(-0.5, duration_s - 0.8)), "walk_s": walk_s,
            "from": (float(rng.uniform(0.05, 0.95)), float(rng.uniform(0.8, 1.0))),
            "shirt": rng.uniform(20, 235, 3).tolist(), "trousers": rng.uniform(10, 120, 3).tolist(),
            "size": float(rng.uniform(0.8, 1.2)),
        })
    return people


def render(camera: FixedCamera, people: list[dict[str, Any]], duration_s: float, noise_seed: int) -> np.ndarray:
    """RGB uint8 frames (n, h, w, 3) of the scene, with a little sensor noise."""
    import cv2

    base = background(camera)
    rng = np.random.default_rng(noise_seed)
    h, w = camera.height, camera.width
    door = (camera.door_x, 0.52)
    frames = []
    for index in range(int(round(duration_s * FPS))):
        t = index / FPS
        picture = base.copy()
        for person in sorted(people, key=lambda p: p["from"][1]):
            progress = (t - person["start_s"]) / person["walk_s"]
            if not 0.0 <= progress <= 1.0:
                continue
            x = (person["from"][0] + (door[0] - person["from"][0]) * progress) * w
            y = (person["from"][1] + (door[1] - person["from"][1]) * progress) * h
            scale = person["size"] * (1.0 - 0.45 * progress) * h / 96
            body_w, body_h = max(2, int(8 * scale)), max(3, int(14 * scale))
            sway = int(2 * scale * np.sin(t * 9))
            top = int(y - body_h * 2)
            cv2.rectangle(picture, (int(x) - body_w // 2, top + body_h // 2),
                          (int(x) + body_w // 2, top + body_h + body_h // 2), person["shirt"], -1)
            cv2.rectangle(picture, (int(x) - body_w // 2 + sway, top + body_h + body_h // 2),
                          (int(x) + body_w // 2 - sway, int(y)), person["trousers"], -1)
            cv2.circle(picture, (int(x), top + body_h // 4), max(2, body_w // 2), (200, 170, 140), -1)
        picture += rng.normal(0, 2.0, picture.shape).astype(np.float32)
        frames.append(np.clip(picture, 0, 255).astype(np.uint8))
    return np.stack(frames)


def transform(frames: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A planted copy's frames and the crf it is encoded at."""
    import cv2

    h, w = frames.shape[1:3]
    if kind.startswith(("up", "down")):
        factor = float(kind[2:] if kind.startswith("up") else kind[4:])
        size = (int(round(w * factor / 2)) * 2, int(round(h * factor / 2)) * 2)
        return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
                         for f in frames]), 23
    if kind == "crf38":
        return frames, 38
    if kind == "trim":
        return frames[int(rng.integers(5, 11)):], 23
    if kind.startswith("bright"):
        return np.clip(frames.astype(np.int16) + int(kind[6:]), 0, 255).astype(np.uint8), 23
    if kind == "crop":
        dx, dy = int(round(w * rng.uniform(0.03, 0.05))), int(round(h * rng.uniform(0.03, 0.05)))
        left, top = int(rng.integers(0, 2)) * dx, int(rng.integers(0, 2)) * dy
        return frames[:, top:top + h - dy, left:left + w - dx], 23
    if kind == "mirror":
        return frames[:, :, ::-1], 23
    raise ValueError(f"unknown copy kind {kind}")


def generate(out: Path, *, n_cameras: int = 3, clips_per_camera: int = 8, copies: int = 10, seed: int = 0,
             duration_s: float = 3.0) -> list[dict[str, Any]]:
    """Write the clips under ``out/<camera>/`` and ``out/truth.jsonl``; return the truth rows. Copy kinds cycle
    through ``COPY_KINDS``; each copy is of a different original where there are enough."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    rows: list[dict[str, Any]] = []
    originals: list[tuple[FixedCamera, list[dict[str, Any]], int, str]] = []
    for camera in cameras(n_cameras, seed):
        for index in range(clips_per_camera):
            people = scene(rng, camera, duration_s)
            noise = int(rng.integers(1 << 30))
            name = f"{camera.name}/{camera.name}_{index:03d}.mp4"
            write_video(out / name, render(camera, people, duration_s, noise), FPS)
            rows.append({"file": name, "camera": camera.name, "copy_of": None, "kind": None,
                         "label": str(rng.choice(["NO_ACTIVITY", "NORMAL_ENTRY", "TAILGATING", "INTRUSION"]))})
            originals.append((camera, people, noise, name))
    order = rng.permutation(len(originals))
    for number in range(copies):
        camera, people, noise, name = originals[int(order[number % len(order)])]
        kind = COPY_KINDS[number % len(COPY_KINDS)]
        frames, crf = transform(render(camera, people, duration_s, noise), kind, rng)
        copy_name = f"{camera.name}/{camera.name}_copy{number:02d}_{kind}.mp4"
        write_video(out / copy_name, frames, FPS, crf=crf)
        rows.append({"file": copy_name, "camera": camera.name, "copy_of": name, "kind": kind, "label": "NORMAL_ENTRY"})
    (out / "truth.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows
