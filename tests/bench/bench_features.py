"""Feature extraction throughput on the synthetic sample: clips/s, against plain decoding of the same frames.

Baseline measured in the same run: sequential decoding (decord, one process) of exactly the frames the extractor
samples from each clip's proxy, with nothing computed on them. The extractor is timed with one worker and with
one per core, on the same ingested project (its cache emptied between runs), and once more with everything cached.

    python tests/bench/bench_features.py [--clips 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sqlalchemy import delete, select  # noqa: E402

from curation.media.features import MAX_FRAMES, MAX_HEIGHT, SAMPLE_FPS, extract_features  # noqa: E402
from curation.media.ingest import ingest  # noqa: E402
from curation.media.synthetic import generate_sample  # noqa: E402
from curation.media.video import sample_frames  # noqa: E402
from curation.records.store import Clip, ClipFeatures, Project  # noqa: E402


def plain_decode(project: Project) -> tuple[float, int]:
    """Seconds to decode, one clip after another, the frames the extractor samples; and the frame count."""
    with project.session() as session:
        proxies = [project.path / c.proxy_path for c in session.scalars(select(Clip).order_by(Clip.id))]
    frames = 0
    started = time.perf_counter()
    for proxy in proxies:
        frames += len(sample_frames(proxy, fps=SAMPLE_FPS, num_frames=MAX_FRAMES, max_height=MAX_HEIGHT))
    return time.perf_counter() - started, frames


def timed_extraction(project: Project, workers: int) -> float:
    with project.write() as session:
        session.execute(delete(ClipFeatures))
    report = extract_features(project, workers=workers)
    assert not report.failed and report.computed > 0, report.to_dict()
    return report.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_sample(tmp / "sample", n_clips=args.clips, random_state=0)
        project = Project.init(tmp / "project", REPO / "rubrics" / "surveillance_alert.yaml")
        ingest(project, [tmp / "sample" / "clips"], metadata=tmp / "sample" / "cameras.csv", group_by="camera")
        plain_decode(project)  # warm the page cache so neither side pays for the first read
        decode_s, frames = plain_decode(project)
        one_s = timed_extraction(project, workers=1)
        many_s = timed_extraction(project, workers=cores)
        cached = extract_features(project)
    n = args.clips
    result = {
        "clips": n,
        "cores": cores,
        "frames_per_clip": round(frames / n, 1),
        "clips_per_s": round(n / many_s, 2),
        "clips_per_s_one_worker": round(n / one_s, 2),
        "plain_decode_clips_per_s": round(n / decode_s, 2),
        "extraction_vs_plain_decode": round(many_s / decode_s, 2),
        "one_worker_vs_plain_decode": round(one_s / decode_s, 2),
        "speedup_vs_one_worker": round(one_s / many_s, 2),
        "cached_rerun_s": round(cached.seconds, 4),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"feature extraction, {n} sample clips ({result['frames_per_clip']} frames each) on {cores} cores: "
              f"{result['clips_per_s']} clips/s; one worker {result['clips_per_s_one_worker']} clips/s "
              f"(x{result['speedup_vs_one_worker']} with all cores)")
        print(f"  baseline, plain sequential decoding of the same frames: {result['plain_decode_clips_per_s']} "
              f"clips/s; extraction takes {result['extraction_vs_plain_decode']}x its time with all cores, "
              f"{result['one_worker_vs_plain_decode']}x with one")
        print(f"  everything cached: {result['cached_rerun_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
