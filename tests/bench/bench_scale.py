"""Benchmark: a 100,000-clip project with 3 answers per clip, every verb and the lead's and reviewer's pages.

No video: clips are rows (scale_project.py), proxies are 1-byte placeholder files so the export finds them. Each
verb runs as the real command in its own process (`python -m curation.cli ...`): wall seconds, CPU seconds (user +
system) and peak RSS of that process. The pages run in Streamlit's AppTest in this process: the first run (which
builds the page's running tallies), a rerun with nothing new, a rerun after one new answer, and review actions.
Baseline, in the same run: pandas doing the same agreement work as `agree` for the nominal `event` field (per-clip
coincidence counts, then 1,000 bootstrap resamples of clips drawn exactly as `agree` draws them).

    python tests/bench/bench_scale.py [--clips 100000] [--keep /tmp/scale-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_project import build_scale_project, write_answers  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def run_verb(*args: str) -> dict:
    """One `cliptune` verb in a fresh process: wall and CPU seconds, peak RSS, and its JSON output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "curation.cli", *args, "--json"], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"cliptune {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return {"verb": args[0], "wall_s": round(wall, 2),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
            # ru_maxrss of children is the largest child so far: the verbs run in increasing order of memory
            # would hide a smaller one, so each reading is "at most" for the verbs after the largest
            "peak_rss_mb": round(after.ru_maxrss / 1024), "output": json.loads(done.stdout or "null")}


def _annotator(project_path: str, name: str, n_clips: int, stop: Any, results: Any) -> None:
    """An annotator submitting an answer every 0.2 s until ``stop`` is set: how long each submit waited."""
    import random

    from curation.records.annotations import add_annotation
    from curation.records.store import Project

    project = Project.open(project_path)
    rng = random.Random(name)
    waits, errors = [], []
    while not stop.is_set():
        fields = {"event": "NORMAL_ENTRY", "persons": 1, "badge_events": 1, "door": 3, "time": "12:00"}
        tic = time.perf_counter()
        try:
            add_annotation(project, rng.randint(1, n_clips), name, fields=fields, seconds_spent=20.0)
        except Exception as exc:  # counted: the acceptance is zero of them
            errors.append(f"{type(exc).__name__}: {exc}")
        waits.append(time.perf_counter() - tic)
        time.sleep(0.2)
    results.put({"waits": waits, "errors": errors})


def import_with_annotators(project_path: Path, answers: Path, n_clips: int, annotators: int = 4) -> dict:
    """`import-annotations` while ``annotators`` processes submit every 0.2 s: the verb's figures and their waits."""
    import multiprocessing

    from scale_project import ANNOTATORS

    context = multiprocessing.get_context("fork")
    stop, results = context.Event(), context.Queue()
    writers = [context.Process(target=_annotator, args=(str(project_path), ANNOTATORS[i], n_clips, stop, results))
               for i in range(annotators)]
    for writer in writers:
        writer.start()
    time.sleep(1.0)  # they are submitting before the import starts
    verb = run_verb("import-annotations", str(project_path), str(answers))
    stop.set()
    gathered = [results.get(timeout=60) for _ in writers]
    for writer in writers:
        writer.join(timeout=30)
    waits = sorted(w for g in gathered for w in g["waits"])
    verb["annotators"] = {"submits": len(waits), "errors": sum(len(g["errors"]) for g in gathered),
                          "max_wait_s": round(waits[-1], 3) if waits else None,
                          "median_wait_s": round(waits[len(waits) // 2], 3) if waits else None,
                          "first_errors": [e for g in gathered for e in g["errors"]][:3]}
    return verb


def pandas_agreement_baseline(db: Path, n_boot: int = 1000, random_state: int = 0) -> dict:
    """Krippendorff's alpha (nominal) of `event` with a bootstrap over clips, in pandas + numpy."""
    import sqlite3

    tic = time.perf_counter()
    with sqlite3.connect(db) as connection:
        answers = pd.read_sql_query(
            "SELECT a.clip_id, a.user_id, json_extract(a.fields, '$.event') AS value FROM annotation a "
            "WHERE a.id IN (SELECT max(id) FROM annotation GROUP BY clip_id, user_id) AND a.status = 'submitted' "
            "AND a.fields IS NOT NULL", connection)
    answers = answers.dropna()
    pairable = answers[answers.groupby("clip_id")["value"].transform("size") >= 2]
    categories = sorted(pairable["value"].unique())
    codes = pairable["value"].map({c: i for i, c in enumerate(categories)}).to_numpy()
    clips = pairable["clip_id"].to_numpy()
    order = np.argsort(clips, kind="stable")
    clips, codes = clips[order], codes[order]
    unit_ids, unit_index = np.unique(clips, return_inverse=True)
    k = len(categories)
    counts = np.zeros((len(unit_ids), k))
    np.add.at(counts, (unit_index, codes), 1)
    m = counts.sum(axis=1)
    # per clip: coincidences o_ck = (n_c n_k - [c == k] n_c) / (m - 1); nominal disagreement needs only the diagonal
    diagonal = (counts * (counts - 1)) / (m - 1)[:, None]

    def alpha(weights: np.ndarray) -> np.ndarray:
        n_c = weights @ counts
        n = n_c.sum(axis=1)
        observed = n - (weights @ diagonal).sum(axis=1)
        expected = (n ** 2 - (n_c ** 2).sum(axis=1)) / (n - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1 - observed / expected

    value = float(alpha(np.ones((1, len(unit_ids))))[0])
    rng = np.random.default_rng(random_state)
    estimates = []
    for start in range(0, n_boot, 100):
        rounds = min(100, n_boot - start)
        weights = np.stack([np.bincount(rng.integers(0, len(unit_ids), len(unit_ids)), minlength=len(unit_ids))
                            for _ in range(rounds)]).astype(float)
        estimates.append(alpha(weights))
    estimates = np.concatenate(estimates)
    estimates = estimates[np.isfinite(estimates)]
    low, high = np.percentile(estimates, [2.5, 97.5])
    return {"value": round(value, 4), "ci": [round(float(low), 4), round(float(high), 4)],
            "seconds": round(time.perf_counter() - tic, 2)}


def page_timings(project_path: Path) -> dict:
    from streamlit.testing.v1 import AppTest

    from curation.records.annotations import add_annotation
    from curation.records.store import Project
    from curation.records.users import add_user, get_user

    os.environ["CLIPTUNE_PROJECT"] = str(project_path)
    project = Project.open(project_path)
    for name, role in (("bench-lead", "lead"), ("bench-reviewer", "reviewer")):
        if get_user(project, name) is None:  # a kept project (--keep) has them from the last run
            add_user(project, name, role, f"password-{name}")
    app = str(REPO / "annotate_ui" / "app.py")

    def log_in(name: str) -> AppTest:
        at = AppTest.from_file(app, default_timeout=600).run()
        by_label = {t.label: t for t in at.text_input}
        by_label["Name"].input(name)
        by_label["Password"].input(f"password-{name}")
        at.button[0].click().run()
        return at

    def timed(at: AppTest, action=None) -> float:
        tic = time.perf_counter()
        (action() if action else at).run()
        if at.exception:
            raise SystemExit(f"page error: {at.exception}")
        return round(time.perf_counter() - tic, 3)

    def showing(at: AppTest, title: str) -> None:
        shown = [element.value for element in at.title]
        if shown != [title]:  # a timing of another page (or the login form) would say nothing
            raise SystemExit(f"expected the {title} page, the app shows {shown}")

    result = {}
    tic = time.perf_counter()
    lead = log_in("bench-lead")  # a lead lands on the dashboard: its first run builds the page's running tallies
    result["dashboard_first_s"] = round(time.perf_counter() - tic, 3)
    showing(lead, "Dashboard")
    result["dashboard_rerun_s"] = [timed(lead) for _ in range(3)]
    add_annotation(project, 1, "annotator00", fields={"event": "INTRUSION", "persons": 1, "badge_events": 0,
                                                      "door": 2, "time": "03:10"}, seconds_spent=35.0)
    result["dashboard_after_one_answer_s"] = timed(lead)
    showing(lead, "Dashboard")
    reviewer = log_in("bench-reviewer")
    result["review_first_s"] = timed(reviewer, lambda: reviewer.switch_page("views/review.py"))
    showing(reviewer, "Review")
    actions = []
    for index in (1, 2, 3):
        actions.append(timed(reviewer, lambda index=index: reviewer.selectbox(key="review_clip").select_index(index)))
    showing(reviewer, "Review")
    result["review_select_clip_s"] = actions
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="Build the project here and keep it (default: a temporary folder).")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="cliptune-scale-"))
    if root.exists() and args.keep:
        shutil.rmtree(root)
    project_path = root / "project"
    report: dict = {"clips": args.clips, "cpu_count": os.cpu_count()}

    tic = time.perf_counter()
    project = build_scale_project(project_path, n_clips=args.clips)
    answers = root / "answers.jsonl"
    lines = write_answers(project, answers)
    for index in range(1, args.clips + 1):  # placeholder proxies: the export checks that media exist
        placeholder = project_path / "media" / "proxies" / f"{index}.mp4"
        placeholder.parent.mkdir(parents=True, exist_ok=True)
        placeholder.write_bytes(b"\0")
    report["setup_s"] = round(time.perf_counter() - tic, 1)
    report["answer_lines"] = lines

    print(f"{args.clips:,} clips, {lines:,} answer lines, {report['cpu_count']} cores (set up in "
          f"{report['setup_s']} s)")
    print(f"{'verb':<32}{'wall s':>9}{'cpu s':>9}{'peak RSS MB':>13}", flush=True)
    verbs = []
    verb = import_with_annotators(project_path, answers, args.clips)
    verb["verb"] = "import-annotations (4 annotators)"
    verbs.append(verb)
    print(f"{verb['verb']:<32}{verb['wall_s']:>9}{verb['cpu_s']:>9}{verb['peak_rss_mb']:>13}   annotators: "
          f"{verb['annotators']}", flush=True)
    for label, args_ in (("resolve", ("resolve", str(project_path))),
                         ("resolve (again, nothing new)", ("resolve", str(project_path))),
                         ("agree", ("agree", str(project_path), "--n-boot", "1000")),
                         # another seed: the report kept by the import does not apply, it is summed from the rows
                         ("agree (--random-state 1)", ("agree", str(project_path), "--n-boot", "1000",
                                                       "--random-state", "1")),
                         # the first split tries every clip's media for features (placeholders here: each fails once)
                         ("split (first)", ("split", str(project_path), "--test-size", "0.15")),
                         # as on an audited project: near-duplicate clusters stored, nothing recomputed
                         ("split (again)", ("split", str(project_path), "--test-size", "0.15")),
                         ("export", ("export", str(project_path), str(root / "export"), "--format",
                                     "hf,llamafactory,swift,trl"))):
        verb = run_verb(*args_)
        verb["verb"] = label
        verbs.append(verb)
        print(f"{label:<32}{verb['wall_s']:>9}{verb['cpu_s']:>9}{verb['peak_rss_mb']:>13}", flush=True)
    agree_event = next(v for v in verbs if v["verb"] == "agree")["output"]["fields"]["event"]  # the baseline's seed
    baseline = pandas_agreement_baseline(project_path / "cliptune.db")
    report["verbs"] = [{k: v for k, v in verb.items() if k != "output"} for verb in verbs]
    report["agreement_event"] = {"cliptune": {"value": agree_event["value"], "ci": agree_event["ci"]},
                                 "pandas_baseline": baseline,
                                 "agree_over_baseline": round(next(v for v in verbs if v["verb"] == "agree")["wall_s"]
                                                              / baseline["seconds"], 2)}
    report["pages"] = page_timings(project_path)

    print(f"pandas baseline (event alpha + 1,000 bootstraps): {baseline['seconds']} s; agree / baseline "
          f"{report['agreement_event']['agree_over_baseline']}x; values: cliptune {agree_event['value']} "
          f"{agree_event['ci']}, pandas {baseline['value']} {baseline['ci']}")
    for name, value in report["pages"].items():
        print(f"{name:<32}{value}")
    out = REPO / "artifacts" / f"bench_scale_{args.clips}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"report: {out}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
