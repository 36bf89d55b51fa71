"""A large project without video, for the scale benchmark: N clips from 24 cameras, 12 annotators, 3 per clip.

Clips are inserted as rows (no files: paths point nowhere, which the verbs measured here never open). The answers
come as a JSONL file in `cliptune import-annotations` form, with realistic mistakes: each annotator slips at their
own rate (2-12 %) on the event, miscounts people, misreads the clock by a few minutes; 4 % of acts are skips and 1 %
"unclear". Deterministic for a given ``random_state``.

    from scale_project import build_scale_project, write_answers
    project = build_scale_project("/tmp/p100k", n_clips=100_000)
    write_answers(project, "/tmp/p100k/answers.jsonl")
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from curation.records.store import Assignment, Clip, Project, User

RUBRIC = Path(__file__).resolve().parents[2] / "rubrics" / "surveillance_alert.yaml"
EVENTS = ("NO_ACTIVITY", "NORMAL_ENTRY", "TAILGATING", "INTRUSION")
EVENT_SHARES = (0.55, 0.38, 0.05, 0.02)
ANNOTATORS = [f"annotator{i:02d}" for i in range(12)]
SLIP_RATES = np.linspace(0.02, 0.12, len(ANNOTATORS))
CAMERAS = 24


def build_scale_project(path: str | os.PathLike, *, n_clips: int, random_state: int = 0) -> Project:
    """A project with ``n_clips`` clip rows, 12 annotators, a reviewer and a lead, 3 annotators assigned per clip."""
    rng = np.random.default_rng(random_state)
    project = Project.init(path, RUBRIC, name=f"scale-{n_clips}")
    start = datetime(2026, 1, 5)
    cameras = rng.integers(0, CAMERAS, n_clips)
    with project.write() as session:
        session.execute(insert(User), [{"name": name, "role": "annotator"} for name in ANNOTATORS]
                        + [{"name": "reviewer", "role": "reviewer"}, {"name": "lead", "role": "lead"}])
        rows = []
        for index in range(n_clips):
            camera = int(cameras[index])
            recorded = start + timedelta(minutes=int(index * 7 % 525_600))
            rows.append({
                "id": index + 1, "root": "/nonexistent", "path": f"cam{camera:02d}/clip{index:06d}.mp4",
                "start_s": 0.0, "end_s": None, "sha256": f"{index:064x}", "source_sha256": f"{index:064x}",
                "duration_s": 8.0, "fps": 15.0, "width": 640, "height": 360, "n_frames": 120, "codec": "h264",
                "bitrate": 400_000, "variable_frame_rate": False, "group_key": f"camera:cam{camera:02d}",
                "metadata": {"camera": f"cam{camera:02d}", "recorded_at": recorded.isoformat()},
                "proxy_path": f"media/proxies/{index + 1}.mp4", "thumbnail_path": f"media/thumbs/{index + 1}.jpg",
                "status": "ready",
            })
        session.execute(insert(Clip), rows)
        user_ids = {name: number + 1 for number, name in enumerate(ANNOTATORS)}
        picks = np.argsort(rng.random((n_clips, len(ANNOTATORS))), axis=1)[:, :3]
        session.execute(insert(Assignment), [{"clip_id": clip + 1, "user_id": user_ids[ANNOTATORS[int(who)]]}
                                             for clip in range(n_clips) for who in picks[clip]])
    return project


def _truth(rng: np.random.Generator, clip_id: int) -> dict:
    event = EVENTS[int(rng.choice(4, p=EVENT_SHARES))]
    persons = 0 if event == "NO_ACTIVITY" else int(rng.integers(1, 4))
    badges = {"NO_ACTIVITY": 0, "NORMAL_ENTRY": persons, "TAILGATING": max(1, persons - 1),
              "INTRUSION": 0}[event]
    minute = int(rng.integers(0, 24 * 60))
    return {"event": event, "persons": persons if event != "TAILGATING" else max(2, persons),
            "badge_events": badges, "door": clip_id % 40 + 1, "time": f"{minute // 60:02d}:{minute % 60:02d}"}


def write_answers(project: Project, out: str | os.PathLike, *, random_state: int = 0) -> int:
    """The assigned annotators' answers as import-annotations JSONL; returns the number of lines."""
    from sqlalchemy import select

    rng = np.random.default_rng(random_state + 1)
    with project.session() as session:
        assigned = session.execute(select(Assignment.clip_id, User.name).join(User, User.id == Assignment.user_id)
                                   .order_by(Assignment.clip_id, Assignment.id)).all()
    truths: dict[int, dict] = {}
    lines = 0
    slip = dict(zip(ANNOTATORS, SLIP_RATES, strict=True))
    with open(out, "w", encoding="utf-8") as handle:
        for clip_id, name in assigned:
            truth = truths.setdefault(clip_id, _truth(rng, clip_id))
            roll = rng.random()
            record: dict = {"clip": clip_id, "annotator": name, "seconds": round(float(rng.gamma(4.0, 45.0)), 1)}
            if roll < 0.04:
                record.update(status="skipped", comment="too dark")
            elif roll < 0.05:
                record.update(status="unclear", comment="door out of frame")
            else:
                fields = dict(truth)
                if rng.random() < slip[name]:
                    fields["event"] = EVENTS[(EVENTS.index(fields["event"]) + int(rng.integers(1, 4))) % 4]
                if rng.random() < slip[name]:
                    fields["persons"] = max(0, fields["persons"] + int(rng.choice([-1, 1])))
                if rng.random() < slip[name] / 2:
                    hours, minutes = map(int, fields["time"].split(":"))
                    total = (hours * 60 + minutes + int(rng.integers(-3, 4))) % (24 * 60)
                    fields["time"] = f"{total // 60:02d}:{total % 60:02d}"
                record["fields"] = fields
            handle.write(json.dumps(record) + "\n")
            lines += 1
    return lines
