"""`cliptune audit`: the JSON shape, a self-contained HTML report that opens offline in a browser, one-line errors."""

from __future__ import annotations

import json
import re
import shutil
from html import escape as html_escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from curation.audit.balance import check_balance
from curation.audit.report import render_html, write_html
from curation.audit.result import AuditInputs
from curation.audit.shortcuts import check_shortcuts
from curation.cli.main import main
from curation.errors import CliptuneError
from curation.rubric import load_rubric

RUBRIC = Path(__file__).resolve().parent.parent / "rubrics" / "surveillance_alert.yaml"


@pytest.fixture(scope="module")
def labelled(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 12-clip sample ingested, with its true answers imported as one annotator's."""
    from curation.media.ingest import ingest
    from curation.records.imports import import_annotations
    from curation.records.store import Project

    folder = tmp_path_factory.mktemp("report") / "project"
    project = Project.init(folder, RUBRIC)
    ingest(project, [sample_dir / "clips"], metadata=sample_dir / "cameras.csv", group_by="camera")
    answers = folder / "answers.jsonl"
    answers.write_text("".join(json.dumps({"clip": r["file"], "annotator": "gt", "fields": r["fields"]}) + "\n"
                               for r in map(json.loads, (sample_dir / "ground_truth.jsonl").open())))
    assert import_annotations(project, answers, create_users=True).imported == 12
    return folder


@pytest.mark.slow
def test_cli_prints_every_check_in_the_documented_shape_and_writes_the_page(labelled: Path, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    page = tmp_path / "audit.html"
    assert main(["audit", str(labelled), "--json", "--html", str(page)]) == 0
    report = json.loads(capsys.readouterr().out)
    checks = report["checks"]
    assert list(checks) == ["shortcuts", "local_shortcuts", "duplicates", "conformance", "balance"]
    assert checks["local_shortcuts"]["summary"]["clips_labelled"] == 12  # region maps of every labelled clip
    assert isinstance(checks["shortcuts"]["flagged"], list) and checks["shortcuts"]["summary"]["clips_labelled"] == 12
    assert checks["duplicates"]["clusters"] == [] and checks["duplicates"]["leakage"] == []
    assert checks["conformance"]["flagged"] == [] and checks["conformance"]["summary"]["checked"]["gold"] == 12
    assert {f["kind"] for f in checks["balance"]["flagged"]} >= {"rare"}  # 12 clips: every class is short
    assert report["labels"]["gold"] == 12 and report["features"]["computed"] == 12
    for check in checks.values():
        assert {"name", "summary", "flagged", "scores"} <= set(check)
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html  # the balance plot at least
    assert not re.search(r"""(src|href)=["']?https?:""", html) and "<script" not in html and "<link" not in html
    # Human output, and features are cached: the second run decodes nothing.
    assert main(["audit", str(labelled)]) == 0
    text = capsys.readouterr().out
    assert "shortcuts:" in text and "duplicates: 0 clusters" in text and "balance:" in text
    assert main(["audit", str(labelled), "--json"]) == 0
    assert {"computed": 0, "cached": 12}.items() <= json.loads(capsys.readouterr().out)["features"].items()


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["audit", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.strip().startswith("error:")
    from curation.records.store import Project

    Project.init(tmp_path / "empty", RUBRIC)
    assert main(["audit", str(tmp_path / "empty"), "--checks", "shortcuts,colour"]) == 1
    assert "unknown checks ['colour']" in capsys.readouterr().err
    assert main(["audit", str(tmp_path / "empty"), "--html", str(tmp_path / "no" / "such" / "a.html")]) == 1
    assert "no such folder" in capsys.readouterr().err
    # An empty project is audited without errors: nothing to flag but the missing classes.
    assert main(["audit", str(tmp_path / "empty"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["checks"]["shortcuts"]["flagged"] == [] and report["checks"]["duplicates"]["clusters"] == []
    assert {f["kind"] for f in report["checks"]["balance"]["flagged"]} == {"absent"}


def planted_report() -> dict:
    """A report made from in-memory inputs: INTRUSION clips are dark, and TAILGATING is rare."""
    rng = np.random.default_rng(0)
    n = 90
    events = rng.choice(["NO_ACTIVITY", "NORMAL_ENTRY", "TAILGATING", "INTRUSION"], size=n, p=[0.4, 0.4, 0.08, 0.12])
    ids = pd.Index(range(1, n + 1), name="clip_id")
    table = pd.DataFrame({"brightness_mean": np.where(events == "INTRUSION", rng.uniform(0.05, 0.2, n),
                                                      rng.uniform(0.35, 0.7, n)),
                          "duration_s": rng.uniform(4, 8, n), "camera": rng.choice(["A", "B"], n),
                          "group": [f"g{i % 9}" for i in range(n)]}, index=ids)
    table.attrs.update(numeric=["brightness_mean", "duration_s"], categorical=["camera", "group"], failed=[])
    inputs = AuditInputs(rubric=load_rubric(RUBRIC), labels=pd.DataFrame({"event": events}, index=ids),
                         features=table)
    return {"project": "lobby <test>", "path": "/nowhere", "rubric": {"name": "surveillance_alert", "version": "x"},
            "created_at": "2026-11-24T00:00:00+00:00",
            "labels": {"used": "gold answers", "gold": n, "by_source": {}, "needs_review": 0, "unlabelled": 0},
            "checks": {"shortcuts": check_shortcuts(inputs, n_permutations=200).to_dict(),
                       "balance": check_balance(inputs).to_dict()}}


def test_html_shows_each_finding_with_its_plot_and_escapes_names(tmp_path: Path) -> None:
    report = planted_report()
    html = render_html(report)
    finding = report["checks"]["shortcuts"]["flagged"][0]
    assert finding["feature"] == "brightness_mean" and finding["value"] == "INTRUSION"
    assert html_escape(finding["message"]) in html
    assert html.count("<svg") == len([f for f in report["checks"]["shortcuts"]["flagged"] if f.get("kind")]) + 1
    assert "lobby &lt;test&gt;" in html and "lobby <test>" not in html
    page = write_html(report, tmp_path / "a.html")
    assert page.read_text(encoding="utf-8") == html and not list(tmp_path.glob(".*part"))
    with pytest.raises(CliptuneError, match="is a folder"):
        write_html(report, tmp_path)


@pytest.mark.browser
def test_html_report_opens_offline_in_chromium(tmp_path: Path) -> None:
    if not shutil.which("chromium") and not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    page_path = write_html(planted_report(), tmp_path / "audit.html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                          "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            fetched: list[str] = []
            page.on("request", lambda request: fetched.append(request.url))
            page.goto(page_path.as_uri())
            assert [url for url in fetched if not url.startswith(("file:", "data:"))] == []
            assert page.locator("h1").inner_text() == "Dataset audit: lobby <test>"
            plot = page.locator("#shortcuts ~ .finding svg").first
            box = plot.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 60
            assert page.locator(".finding .flag").first.inner_text().startswith(
                "brightness_mean alone predicts event=INTRUSION")
            assert page.locator("#balance ~ svg rect").count() >= 4
        finally:
            browser.close()
