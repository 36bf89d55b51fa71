"""Ingest throughput on the synthetic sample: clips/s, and where the time goes (hashing, decoding, encoding proxies).

Baselines measured in the same run: the same ingest with one worker process, and a plain decode of every frame
of every clip with decord (the least any ingest that looks at the pictures must do).

    python tests/bench/bench_ingest.py [--clips 40] [--json]
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

from curation.media.ingest import ingest  # noqa: E402
from curation.media.synthetic import generate_sample  # noqa: E402
from curation.media.video import _reader  # noqa: E402
from curation.records.store import Project  # noqa: E402


def run_ingest(sample: Path, folder: Path, workers: int) -> dict:
    project = Project.init(folder, REPO / "rubrics" / "surveillance_alert.yaml")
    report = ingest(project, [sample / "clips"], metadata=sample / "cameras.csv", group_by="camera", workers=workers)
    assert not report.failed, report.failed
    return report.to_dict()


def decode_everything(sample: Path) -> float:
    started = time.perf_counter()
    for path in sorted((sample / "clips").rglob("*")):
        if path.is_file():
            reader = _reader(path)
            reader.get_batch(list(range(len(reader)))).asnumpy()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_sample(tmp / "sample", n_clips=args.clips, random_state=0)
        decode_s = decode_everything(tmp / "sample")
        one = run_ingest(tmp / "sample", tmp / "one", workers=1)
        many = run_ingest(tmp / "sample", tmp / "many", workers=os.cpu_count() or 1)
    work = many["hash_s"] + many["decode_s"] + many["encode_s"]
    result = {
        "clips": args.clips,
        "cores": os.cpu_count(),
        "clips_per_s": many["clips_per_s"],
        "clips_per_s_one_worker": one["clips_per_s"],
        "speedup_vs_one_worker": round(one["seconds"] / many["seconds"], 2),
        "wall_s": many["seconds"],
        "plain_decode_s": round(decode_s, 3),
        "ingest_vs_plain_decode": round(one["seconds"] / decode_s, 2),
        "share_hash": round(many["hash_s"] / work, 3),
        "share_decode": round(many["decode_s"] / work, 3),
        "share_encode": round(many["encode_s"] / work, 3),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"ingest {args.clips} sample clips on {result['cores']} cores: {result['clips_per_s']} clips/s "
              f"({result['wall_s']} s); one worker {result['clips_per_s_one_worker']} clips/s "
              f"(x{result['speedup_vs_one_worker']} with all cores)")
        print(f"  time in workers: hash {result['share_hash']:.0%}, decode {result['share_decode']:.0%}, "
              f"encode proxies + thumbnails {result['share_encode']:.0%}")
        print(f"  baseline, decord decode of every frame: {result['plain_decode_s']} s; one-worker ingest takes "
              f"{result['ingest_vs_plain_decode']}x that")
    return 0


if __name__ == "__main__":
    sys.exit(main())
