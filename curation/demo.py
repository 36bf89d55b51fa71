"""The demo project: the synthetic sample ingested, with people, assignments and simulated annotations.

Simulated annotators copy the sample's ground truth and make mistakes at known rates, field by field, so
agreement and gold answers have known right answers: a better annotator agrees more with the others and with
the truth, and an easy field (the door number) agrees more than a hard one (the count of badge flashes).

Example::

    build_demo("projects/demo", "data/sample")       # idempotent: reuses what exists
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from curation.rubric import Rubric

DEMO_PASSWORD = "cliptune-demo"
DEMO_ANNOTATORS = {"ana": 0.04, "ben": 0.12, "cho": 0.30}  # base error rate per field
DEMO_PEOPLE = {**{name: "annotator" for name in DEMO_ANNOTATORS}, "rev": "reviewer", "lead": "lead"}  # login: role
# How much harder each field is than the base rate: counting flashes is hard, reading a door number easy.
FIELD_DIFFICULTY = {"door": 0.25, "time": 0.5, "event": 1.0, "persons": 1.5, "badge_events": 2.2}


def corrupt_value(rubric: Rubric, name: str, value: Any, rng: np.random.Generator) -> Any:
    """A plausible wrong value for one field: another choice, an off-by-one count, a clock off by minutes."""
    field = rubric.field_map[name]
    if field.type in ("choice", "ordinal"):
        return str(rng.choice([c for c in field.choices if c != value]))
    if field.type == "integer":
        low = int(field.min) if field.min is not None else value - 2
        high = int(field.max) if field.max is not None else value + 2
        options = [v for v in (value - 1, value + 1, value + 2) if low <= v <= high and v != value]
        return int(rng.choice(options)) if options else value
    if field.type == "time":
        hours, minutes = (int(p) for p in str(value).split(":")[:2])
        total = (hours * 60 + minutes + int(rng.choice([-7, -3, 3, 9]))) % (24 * 60)
        return f"{total // 60:02d}:{total % 60:02d}"
    if field.type == "number":
        return value + float(rng.choice([-1.0, 1.0])) * max(1.0, field.tolerance * 2)
    return f"{value} (unsure)"


def simulate_annotations(
    rubric: Rubric,
    truth: dict[str, dict[str, Any]],
    assignments: dict[str, list[str]],
    *,
    error_rates: dict[str, float] | None = None,
    difficulty: dict[str, float] | None = None,
    random_state: int = 0,
) -> list[dict[str, Any]]:
    """JSONL-ready annotation records: for each annotator's clips, the truth with per-field mistakes."""
    error_rates = error_rates or DEMO_ANNOTATORS
    difficulty = difficulty or FIELD_DIFFICULTY
    rng = np.random.default_rng(random_state)
    records = []
    for annotator, clips in assignments.items():
        for clip in clips:
            fields = dict(truth[clip])
            for name in fields:
                if rng.random() < min(1.0, error_rates[annotator] * difficulty.get(name, 1.0)):
                    fields[name] = corrupt_value(rubric, name, fields[name], rng)
            seconds = float(np.round(rng.lognormal(np.log(45 + 60 * error_rates[annotator]), 0.35), 1))
            records.append({"clip": clip, "annotator": annotator, "fields": fields, "seconds": seconds})
    return records


def read_ground_truth(sample_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """{file relative to sample/clips: fields} from the sample's ground_truth.jsonl."""
    truth = {}
    with open(Path(sample_dir) / "ground_truth.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                truth[record["file"]] = record["fields"]
    return truth


def build_demo(
    project_dir: str | os.PathLike,
    sample_dir: str | os.PathLike,
    *,
    n_clips: int = 40,
    label_share: float = 0.6,
    random_state: int = 0,
) -> dict[str, Any]:
    """Make (or reuse) the sample and the demo project: ingest, people, assignments, simulated annotations.

    Every person's password is ``cliptune-demo``. About ``label_share`` of each annotator's assigned clips get
    an answer, so the label page still has work left.
    """
    from sqlalchemy import select

    from curation.media.ingest import ingest
    from curation.media.synthetic import generate_sample
    from curation.records.imports import import_annotations
    from curation.records.store import DATABASE_NAME, Assignment, Clip, Project, User
    from curation.records.users import add_user, get_user
    from curation.team.assign import assign

    sample_dir, project_dir = Path(sample_dir), Path(project_dir)
    if not (sample_dir / "ground_truth.jsonl").exists():
        generate_sample(sample_dir, n_clips=n_clips, random_state=random_state)
    rubric_path = Path(__file__).resolve().parent.parent / "rubrics" / "surveillance_alert.yaml"
    fresh = not (project_dir / DATABASE_NAME).exists()
    project = Project.init(project_dir, rubric_path, name="demo") if fresh else Project.open(project_dir)
    report = ingest(project, [sample_dir / "clips"], metadata=sample_dir / "cameras.csv", group_by="camera")
    for name, role in DEMO_PEOPLE.items():
        if get_user(project, name) is None:
            add_user(project, name, role, DEMO_PASSWORD)
    assign(project, list(DEMO_ANNOTATORS), overlap=0.3, per_clip=3, random_state=random_state)
    result: dict[str, Any] = {"project": str(project_dir), "ingest": report.to_dict(), "password": DEMO_PASSWORD}
    if fresh:
        truth = read_ground_truth(sample_dir)
        with project.session() as session:
            rows = session.execute(
                select(User.name, Clip.path).join(Assignment, Assignment.user_id == User.id)
                .join(Clip, Clip.id == Assignment.clip_id).order_by(Assignment.id)
            ).all()
        assignments: dict[str, list[str]] = {}
        for name, path in rows:
            assignments.setdefault(name, []).append(path)
        partial = {name: clips[: int(len(clips) * label_share)] for name, clips in assignments.items()}
        records = simulate_annotations(project.rubric, truth, partial, random_state=random_state)
        labels = project_dir / "simulated_annotations.jsonl"
        labels.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        result["annotations"] = import_annotations(project, labels).to_dict()
    return result
