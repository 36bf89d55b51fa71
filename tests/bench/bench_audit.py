"""Benchmark: near-duplicate search through the stored index on 1,000 and 5,000 clips of 6 fixed cameras, features
cached, against comparing all pairs; and precision/recall on planted copies. Not run in CI.

    HF_HUB_OFFLINE=1 .venv/bin/python tests/bench/bench_audit.py [--sizes 1000 5000] [--pool 20] [--json]

What it does (rendering 5,000 videos would take long, so feature rows are varied from a rendered pool):

1. renders, with tests/fixed_cameras.py, 6 cameras x ``--pool`` distinct clips plus one copy of every kind per
   camera (60 copies), and computes their features exactly as ingest does (``frame_features`` of the sampled
   frames);
2. for each size N, makes a real project store with N clips: the rendered clips and copies first, then varied
   rows, each a new scene of a camera: the foreground content of one of its rendered clips moved by 3-12 cells
   and/or sign-flipped (dark figures light) and shifted in time, over that clip's still pictures; no two rows share
   (source, move, sign), so each is distinct from every other row;
3. times ``update_index`` (the whole index built from cached features), then a second ``near_duplicate_groups``
   (stored clusters, nothing recomputed), and the cost of all pairs: ``compare`` timed on 2,000 random pairs of
   the same project, times N(N-1)/2 (an extrapolation: all pairs at 5,000 clips would take about an hour);
4. reports precision and recall of the found pairs against the planted copies (varied rows count as distinct).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for fixed_cameras
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fixed_cameras import COPY_KINDS, generate  # noqa: E402

from curation.audit.duplicate_index import update_index  # noqa: E402
from curation.audit.duplicates import compare, near_duplicate_groups  # noqa: E402
from curation.media import features  # noqa: E402
from curation.records.store import Clip, ClipFeatures, Project  # noqa: E402

RUBRIC = Path(__file__).resolve().parents[2] / "rubrics" / "surveillance_alert.yaml"


def render_pool(folder: Path, per_camera: int, seed: int) -> list[dict]:
    from curation.media.video import sample_frames

    rows = generate(folder, n_cameras=6, clips_per_camera=per_camera, copies=6 * len(COPY_KINDS), seed=seed)
    for row in rows:
        frames = sample_frames(folder / row["file"], fps=features.SAMPLE_FPS, num_frames=features.MAX_FRAMES,
                               max_height=features.MAX_HEIGHT)
        row["values"] = features.frame_features(frames)
    return rows


def varied(source: dict, shift: tuple[int, int], sign: int, roll: int) -> dict:
    """A new scene of the source's camera: its foreground moved ``shift`` cells (rows, columns, circularly),
    ``sign`` -1 turns dark figures light, and ``roll`` frames later (circularly), over its still pictures."""
    cells = features.content_of(source["values"]["signature"])
    cells = sign * np.roll(np.roll(cells, shift, axis=(1, 2)), roll, axis=0)
    content = np.clip(np.rint(cells / 2), -127, 127).astype(np.int8)
    signature = {**source["values"]["signature"], "content": base64.b64encode(content.tobytes()).decode("ascii")}
    return {**source["values"], "signature": signature}


def make_project(folder: Path, pool: list[dict], size: int, seed: int) -> tuple[Project, set[frozenset[int]]]:
    rng = np.random.default_rng(seed)
    project = Project.init(folder, RUBRIC)
    originals = [r for r in pool if r["copy_of"] is None]
    by_camera: dict[str, list[dict]] = {}
    for row in originals:
        by_camera.setdefault(row["camera"], []).append(row)
    # every variant a different (source, shift, sign): two variants never share their foreground; shifts of 3
    # cells and more, or a flipped sign, leave content that correlates weakly with the source's
    combos = {camera: [(source, (dy, dx), sign) for source in range(len(clips)) for dy in (0, 3, 6, 9)
                       for dx in (0, 3, 6, 9, 12) for sign in (1, -1) if (dy, dx, sign) != (0, 0, 1)]
              for camera, clips in by_camera.items()}
    for camera in combos:
        combos[camera] = [combos[camera][i] for i in rng.permutation(len(combos[camera]))]
    rows = list(pool)
    cameras = sorted(by_camera)
    while len(rows) < size:
        camera = cameras[len(rows) % len(cameras)]
        if not combos[camera]:
            raise SystemExit(f"--pool is too small for {size} clips: render more distinct clips per camera")
        source, shift, sign = combos[camera].pop()
        rows.append({"file": f"varied/{len(rows)}.mp4", "camera": camera, "copy_of": None,
                     "values": varied(by_camera[camera][source], shift, sign, int(rng.integers(0, 12)))})
    rows = rows[:size]
    with project.write() as session:
        for index, row in enumerate(rows, start=1):
            session.add(Clip(id=index, root="/bench", path=row["file"], sha256=f"{index:064x}",
                             source_sha256=f"{index:064x}", duration_s=3.0, fps=10.0, width=160, height=120,
                             n_frames=30,
                             group_key=f"camera:{row['camera']}", metadata_={"camera": row["camera"]}))
        session.flush()
        for index, row in enumerate(rows, start=1):
            session.add(ClipFeatures(clip_id=index, version=features.EXTRACTOR_VERSION, values=row["values"]))
    ids = {row["file"]: index for index, row in enumerate(rows, start=1)}
    planted = {frozenset((ids[r["file"]], ids[r["copy_of"]])) for r in rows if r["copy_of"] in ids}
    return project, planted


def all_pairs_seconds(project: Project, size: int, seed: int, samples: int = 2000) -> float:
    signatures = {i: features.signature_of(v) for i, v in features.load_features(project).items()}
    rng = np.random.default_rng(seed)
    pairs = [tuple(rng.choice(size, 2, replace=False) + 1) for _ in range(samples)]
    started = time.perf_counter()
    for a, b in pairs:
        compare(signatures[int(a)], signatures[int(b)])
    per_pair = (time.perf_counter() - started) / samples
    return per_pair * size * (size - 1) / 2


def run(sizes: list[int], per_camera: int, seed: int) -> dict:
    results: dict = {"sizes": {}, "pool": per_camera, "seed": seed}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        pool = render_pool(Path(tmp) / "pool", per_camera, seed)
        results["render_s"] = round(time.perf_counter() - started, 1)
        for size in sizes:
            project, planted = make_project(Path(tmp) / f"p{size}", pool, size, seed)
            started = time.perf_counter()
            state = update_index(project, set())
            index_s = time.perf_counter() - started
            started = time.perf_counter()
            near_duplicate_groups(project)
            stored_s = time.perf_counter() - started
            found = {frozenset((a, b)) for cluster in state.clusters for i, a in enumerate(cluster)
                     for b in cluster[i + 1:]}
            all_s = all_pairs_seconds(project, size, seed)
            results["sizes"][size] = {
                "index_s": round(index_s, 2), "stored_read_s": round(stored_s, 3),
                "all_pairs_s_extrapolated": round(all_s, 1), "speedup": round(all_s / index_s, 1),
                "candidates": state.stats["candidates"], "planted_pairs": len(planted), "found_pairs": len(found),
                "precision": round(len(found & planted) / len(found), 3) if found else None,
                # among the rendered clips only (varied rows are stand-ins, not footage)
                "found_pairs_rendered": len(rendered := {p for p in found if max(p) <= len(pool)}),
                "precision_rendered": round(len(rendered & planted) / len(rendered), 3) if rendered else None,
                "recall": round(len(found & planted) / len(planted), 3) if planted else None,
            }
            project.engine.dispose()
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        results["growth_exponent"] = round(math.log(results["sizes"][large]["index_s"]
                                                    / results["sizes"][small]["index_s"]) / math.log(large / small), 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--pool", type=int, default=24, help="rendered distinct clips per camera")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args.sizes, args.pool, args.seed)
    print(json.dumps(results, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
