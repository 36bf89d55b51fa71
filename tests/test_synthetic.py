"""The synthetic sample: deterministic, its answers follow the rubric, and the pictures show what the answers say."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from curation.media.synthetic import CAMERAS, generate_sample
from curation.media.video import probe, sample_frames
from curation.rubric import load_rubric

RUBRIC = Path(__file__).resolve().parent.parent / "rubrics" / "surveillance_alert.yaml"


def read_truth(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "ground_truth.jsonl").read_text().splitlines()]


def segments(flags: np.ndarray) -> int:
    """Number of runs of True."""
    return int(np.sum(np.diff(np.concatenate([[0], flags.astype(int)])) == 1))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    generate_sample(out, n_clips=16, random_state=11, near_duplicates=3)
    return out


def test_answers_follow_the_rubric_and_its_event_rules(sample: Path) -> None:
    rubric = load_rubric(RUBRIC)
    truth = read_truth(sample)
    assert len(truth) == 19 and sum(r["near_duplicate_of"] is not None for r in truth) == 3
    doors = {c.name: c.door for c in CAMERAS}
    for record in truth:
        fields = record["fields"]
        assert rubric.validate_fields(fields) == []
        assert rubric.parse(rubric.render(fields)) == fields
        persons, badges = fields["persons"], fields["badge_events"]
        expected = ("NO_ACTIVITY" if persons == 0 else "INTRUSION" if badges == 0
                    else "TAILGATING" if persons > badges else "NORMAL_ENTRY")
        assert fields["event"] == expected and fields["door"] == doors[record["camera"]]
        # Every clip lasts 5.6–6.4 s whatever happens in it: a length that grew with the number of people would
        # plant a shortcut to the event (trimmed near-copies are 0.3 s shorter).
        assert 5.2 <= probe(sample / "clips" / record["file"]).duration_s <= 6.5, record
    with open(sample / "cameras.csv", newline="") as handle:
        rows = {row["file"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {r["file"] for r in truth}
    assert all(rows[r["file"]]["recorded_at"][11:16] == r["fields"]["time"] for r in truth)


def test_pictures_show_the_answers(sample: Path) -> None:
    """The badge reader's green flashes and the door opening can be counted in the frames themselves."""
    by_name = {c.name: c for c in CAMERAS}
    for record in read_truth(sample):
        if record["near_duplicate_of"]:
            continue
        camera = by_name[record["camera"]]
        path = sample / "clips" / record["file"]
        frames = sample_frames(path, fps=probe(path).fps).astype(int)
        door_top = int(camera.height * 0.72) - int(camera.height * 0.50)
        door_left = int(camera.width * camera.door_x - int(camera.width * 0.16) / 2)
        led_x, led_y = door_left + int(camera.width * 0.16) + 4, door_top + int(camera.height * 0.50) // 3
        led = frames[:, led_y: led_y + 6, led_x: led_x + 6]
        red, green, blue = led[..., 0], led[..., 1], led[..., 2]
        led_green = ((green > 180) & (red < 140) & (blue < 160)).sum(axis=(1, 2)) >= 2
        assert segments(led_green) == record["fields"]["badge_events"], (record, led_green.astype(int).tolist())
        # The upper half of the door: dark while it stands open, and people in front of it never reach that high.
        door = frames[:, door_top + 3: door_top + int(camera.height * 0.25),
                      int(camera.width * camera.door_x) - 3: int(camera.width * camera.door_x) + 3]
        opened = door.mean(axis=(1, 2, 3)) < (40 if not record["night"] else 25)
        assert segments(opened) == record["fields"]["persons"], record


def test_same_seed_same_sample_and_night_is_darker(tmp_path: Path) -> None:
    first = generate_sample(tmp_path / "a", n_clips=8, random_state=5)
    generate_sample(tmp_path / "b", n_clips=8, random_state=5)
    assert read_truth(tmp_path / "a") == read_truth(tmp_path / "b")
    for record in read_truth(tmp_path / "a")[:3]:
        a = sample_frames(tmp_path / "a" / "clips" / record["file"], num_frames=3).astype(int)
        b = sample_frames(tmp_path / "b" / "clips" / record["file"], num_frames=3).astype(int)
        # The same pictures; the encoder may round a few pixels differently from one run to the next.
        assert np.abs(a - b).mean() < 2.0
    truth = read_truth(tmp_path / "a")
    brightness = {r["file"]: sample_frames(tmp_path / "a" / "clips" / r["file"], num_frames=1).mean() for r in truth}
    night = [brightness[r["file"]] for r in truth if r["night"]]
    day = [brightness[r["file"]] for r in truth if not r["night"]]
    assert night and day and max(night) < min(day)
    assert sum(first.events.values()) == 8 and first.night == len(night)


def test_night_intrusion_shortcut(tmp_path: Path) -> None:
    info = generate_sample(tmp_path / "s", n_clips=40, random_state=2, shortcut="night_intrusion")
    truth = read_truth(tmp_path / "s")
    assert info.events.get("INTRUSION", 0) >= 2
    assert all(r["night"] == (r["fields"]["event"] == "INTRUSION") for r in truth)
    with pytest.raises(ValueError, match="unknown shortcut"):
        generate_sample(tmp_path / "x", n_clips=2, shortcut="always_sunny")
    with pytest.raises(ValueError, match="near_duplicates"):
        generate_sample(tmp_path / "x", n_clips=2, near_duplicates=3)
