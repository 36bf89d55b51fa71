"""Benchmark: cliptune's krippendorff_alpha vs the krippendorff package, same data, same run; and per-field
agreement with its 1,000-round bootstrap from per-clip statistics vs the per-resample loop it replaced.

Part 1: 100,000 units × 5 coders, 5 labels, 10 % of ratings missing (fixed seed); coders copy a latent label 70 %
of the time. Nominal and interval levels; best of 3 interleaved runs each, after a first call of each that is
reported apart (it pays for fresh memory pages). Fails if ours is slower or the values differ by more than 1e-9.

Part 2 (``--clips``): ``field_agreement`` on a choice, an ordinal and a time field, 3 answers per clip, 1,000
bootstrap rounds: seconds and traced peak memory (tracemalloc, a second untimed call) of the new path and of the
per-resample loop (tests/agreement_reference.py) in the same run. The loop is linear in rounds: above
``--old-max-clips`` it is timed on ``--old-rounds`` rounds and scaled (said so in the output). Fails if the two
give different report rows wherever both ran in full.

Part 3 (``--project-clips``): a project of that many clips × 3 answers (rows inserted directly, no video), then
`agreement_report` timed, with reading the answers (``current_annotations``) timed apart.

    python tests/bench/bench_agreement.py [--units 100000 --coders 5 --missing 0.1 --repeats 3] [--json]
        [--clips 2000 20000 100000 --old-max-clips 20000 --old-rounds 1000] [--project-clips 100000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import krippendorff
import numpy as np

from curation.review.agreement import krippendorff_alpha
from curation.review.field_agreement import agreement_report, field_agreement
from curation.rubric import RubricField, parse_rubric_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agreement_reference import reference_field_agreement  # noqa: E402 (lives beside the tests)

FIELDS = [
    RubricField(name="event", type="choice", choices=["NO_ACTIVITY", "NORMAL_ENTRY", "TAILGATING", "INTRUSION"]),
    RubricField(name="severity", type="ordinal", choices=["none", "low", "medium", "high", "critical"]),
    RubricField(name="time", type="time", format="hh:mm:ss", tolerance=2),
]
PROJECT_RUBRIC = """
name: bench_agreement
prompt: Judge the clip.
fields:
  - {name: event, type: choice, choices: [NO_ACTIVITY, NORMAL_ENTRY, TAILGATING, INTRUSION]}
  - {name: severity, type: ordinal, choices: [none, low, medium, high, critical]}
  - {name: persons, type: integer, min: 0, max: 20}
  - {name: time, type: time, format: "hh:mm:ss", tolerance: 2}
output:
  template: "{event} {severity} {persons} {time}"
"""


def make_data(n_units: int, n_coders: int, missing: float, n_labels: int = 5, seed: int = 0) -> np.ndarray:
    """Coders × units float matrix, NaN = missing."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_labels, n_units)
    copies = rng.random((n_coders, n_units)) < 0.7
    data = np.where(copies, truth, rng.integers(0, n_labels, (n_coders, n_units))).astype(np.float64)
    data[rng.random(data.shape) < missing] = np.nan
    return data


def race(repeats: int, ours: Callable[[], float], theirs: Callable[[], float]) -> dict[str, float]:
    """First-call and best-of-``repeats`` wall times of both, timed runs interleaved.

    The first call of each runs in a cold process (fresh memory pages, a numpy allocator not yet warm), so it is
    reported apart; the timed runs alternate so that both see the same process state.
    """
    figures: dict[str, float] = {}
    for name, run in (("ours", ours), ("krippendorff", theirs)):
        tic = time.perf_counter()
        figures[f"{name}_value"] = run()
        figures[f"{name}_first_s"] = time.perf_counter() - tic
    for name in ("ours", "krippendorff"):
        figures[f"{name}_s"] = float("inf")
    for _ in range(repeats):
        for name, run in (("ours", ours), ("krippendorff", theirs)):
            tic = time.perf_counter()
            run()
            figures[f"{name}_s"] = min(figures[f"{name}_s"], time.perf_counter() - tic)
    return figures


def field_answers(rubric_field: RubricField, n_clips: int, seed: int = 0) -> dict[int, dict[str, Any]]:
    """{clip: {annotator: value}}: 3 annotators per clip, each copying a latent value 80 % of the time."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 86_000, n_clips)
    answers: dict[int, dict[str, Any]] = {clip: {} for clip in range(1, n_clips + 1)}
    for user in ("ana", "ben", "cho"):
        slip = rng.random(n_clips) >= 0.8
        if rubric_field.type == "time":
            seconds = truth + slip * rng.integers(-5, 6, n_clips)
            labels = [f"{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}" for t in seconds.tolist()]
        else:
            k = len(rubric_field.choices)
            codes = np.where(slip, rng.integers(0, k, n_clips), truth % k)
            labels = [rubric_field.choices[c] for c in codes.tolist()]
        for clip, label in zip(answers, labels, strict=True):
            answers[clip][user] = label
    return answers


def measure(run: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, seconds, traced peak MiB of a second call)."""
    tic = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - tic
    tracemalloc.start()
    try:
        run()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    return result, seconds, peak


def bench_fields(sizes: list[int], n_boot: int, old_max_clips: int, old_rounds: int) -> tuple[list[dict], bool]:
    results, failed = [], False
    for n_clips in sizes:
        for rubric_field in FIELDS:
            answers = field_answers(rubric_field, n_clips)
            new, new_s, new_mib = measure(lambda: field_agreement(rubric_field, answers, n_boot=n_boot))  # noqa: B023
            row: dict[str, Any] = {"field": rubric_field.type, "clips": n_clips, "n_boot": n_boot, "new_s": new_s,
                                   "new_peak_mib": new_mib}
            if n_clips <= old_max_clips:
                old, old_s, old_mib = measure(
                    lambda: reference_field_agreement(rubric_field, answers, n_boot=n_boot))  # noqa: B023
                row |= {"old_s": old_s, "old_peak_mib": old_mib, "old_scaled_from_rounds": None, "same": old == new}
                failed |= old != new
            else:
                tic = time.perf_counter()
                reference_field_agreement(rubric_field, answers, n_boot=old_rounds)
                row |= {"old_s": (time.perf_counter() - tic) * n_boot / old_rounds, "old_peak_mib": None,
                        "old_scaled_from_rounds": old_rounds, "same": None}
            row["speedup"] = row["old_s"] / new_s
            results.append(row)
            print(f"field_agreement {row['field']:<7} {n_clips:>7,} clips: new {new_s:7.2f} s {new_mib:7.1f} MiB | "
                  f"old {row['old_s']:8.1f} s"
                  + (f" {row['old_peak_mib']:7.1f} MiB" if row["old_peak_mib"] is not None else
                     f" (timed on {old_rounds} rounds, scaled)") + f" | {row['speedup']:6.0f}x"
                  + ("" if row["same"] is None else " same rows" if row["same"] else " ROWS DIFFER"), flush=True)
    return results, failed


def build_project(path: Path, n_clips: int, seed: int = 0) -> Any:
    """A project of ``n_clips`` clip rows with 3 submitted answers each, inserted directly (no video)."""
    from sqlalchemy import insert

    from curation.records.store import Annotation, Clip, Project, User

    rubric = parse_rubric_text(PROJECT_RUBRIC)
    project = Project.init(path, rubric)
    fields = {f.name: f for f in rubric.fields}
    per_field = {f.name: field_answers(f, n_clips, seed) for f in FIELDS}
    persons = np.random.default_rng(seed).poisson(2, (3, n_clips))
    with project.write() as session:
        session.execute(insert(Clip), [
            {"id": i, "root": "/nowhere", "path": f"c{i}.mp4", "sha256": f"{i:064x}", "source_sha256": f"{i:064x}",
             "duration_s": 5.0, "fps": 25.0, "width": 64, "height": 64, "n_frames": 125, "group_key": str(i % 100)}
            for i in range(1, n_clips + 1)])
        users = ("ana", "ben", "cho")
        session.execute(insert(User), [{"id": k + 1, "name": u, "role": "annotator"} for k, u in enumerate(users)])
        rows = []
        for k, user in enumerate(users):
            for clip in range(1, n_clips + 1):
                answer = {name: per_field[name][clip][user] for name in ("event", "severity", "time")}
                answer["persons"] = int(persons[k, clip - 1])
                answer = {name: answer[name] for name in fields}
                rows.append({"clip_id": clip, "user_id": k + 1, "rubric_version": project.rubric_version,
                             "fields": answer, "output_text": "-", "seconds_spent": 30.0, "source": "import",
                             "status": "submitted"})
        session.execute(insert(Annotation), rows)
    return project


def bench_project(n_clips: int, n_boot: int) -> dict[str, float]:
    from curation.records.annotations import current_annotations

    with tempfile.TemporaryDirectory() as folder:
        tic = time.perf_counter()
        project = build_project(Path(folder) / "project", n_clips)
        built = time.perf_counter() - tic
        tic = time.perf_counter()
        current_annotations(project)
        reading = time.perf_counter() - tic
        tic = time.perf_counter()
        agreement_report(project, n_boot=n_boot)
        report = time.perf_counter() - tic
    figures = {"clips": n_clips, "build_s": built, "current_annotations_s": reading, "agreement_report_s": report}
    print(f"agreement_report on {n_clips:,} clips × 3 answers, 4 fields, {n_boot} rounds: {report:.1f} s "
          f"(current_annotations alone: {reading:.1f} s; it runs twice inside; project built in {built:.0f} s)")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--coders", type=int, default=5)
    parser.add_argument("--missing", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of text")
    parser.add_argument("--clips", type=int, nargs="*", default=[], help="part 2 sizes, e.g. 2000 20000 100000")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--old-max-clips", type=int, default=20_000)
    parser.add_argument("--old-rounds", type=int, default=50)
    parser.add_argument("--project-clips", type=int, default=0, help="part 3: project size (0: skip)")
    parser.add_argument("--skip-alpha", action="store_true", help="skip part 1")
    args = parser.parse_args()
    field_results, fields_failed = bench_fields(args.clips, args.n_boot, args.old_max_clips, args.old_rounds)
    project = bench_project(args.project_clips, args.n_boot) if args.project_clips else None
    if args.skip_alpha:
        if args.json:
            print(json.dumps({"fields": field_results, "project": project}, indent=2))
        return 1 if fields_failed else 0
    data = make_data(args.units, args.coders, args.missing)

    results, failed = [], False
    for level in ("nominal", "interval"):
        figures = race(
            args.repeats,
            lambda: krippendorff_alpha(data, level=level),  # noqa: B023
            lambda: float(krippendorff.alpha(reliability_data=data, level_of_measurement=level)),  # noqa: B023
        )
        agree = abs(figures["ours_value"] - figures["krippendorff_value"]) <= 1e-9
        speedup = figures["krippendorff_s"] / figures["ours_s"]
        failed |= not agree or speedup < 1
        results.append(
            {"level": level, "units": args.units, "coders": args.coders, "missing": args.missing}
            | figures
            | {"speedup": speedup, "values_agree_1e-9": agree}
        )
    if args.json:
        print(json.dumps({"krippendorff_version": version("krippendorff"), "results": results,
                          "fields": field_results, "project": project}, indent=2))
    else:
        for r in results:
            verdict = f"{r['speedup']:.1f}x faster" if r["speedup"] >= 1 else f"{1 / r['speedup']:.1f}x SLOWER"
            print(
                f"krippendorff_alpha {r['units']}x{r['coders']} {r['level']}: ours {r['ours_s']:.3f} s, "
                f"krippendorff {r['krippendorff_s']:.3f} s, ratio {verdict} (first calls: ours "
                f"{r['ours_first_s']:.3f} s, krippendorff {r['krippendorff_first_s']:.3f} s); alpha "
                f"{r['ours_value']:.12f} vs {r['krippendorff_value']:.12f} "
                f"({'agree' if r['values_agree_1e-9'] else 'DIFFER'})"
            )
    return 1 if failed or fields_failed else 0


if __name__ == "__main__":
    sys.exit(main())
