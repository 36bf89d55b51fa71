"""The tiny model really learns from the video: held-out scores far above the base model and above a control trained
identically on shuffled labels; and the saved adapter, reloaded or merged, predicts exactly what was evaluated.

Why a clip-level split and a per-field criterion, not the exporter's camera split and whole-answer exact match:

- ``door`` is a function of the camera. Split by camera, the held-out doors are numbers the model never saw, so no
  model can get them right: the field measures nothing there.
- ``time`` is a clock burned into the frame in 5-pixel digits; at this pixel budget (112 x 112) a random-init model
  trained on ~50 clips cannot read it, so whole-answer exact match is 0 for every model here, trained or not.
- ``event`` / ``persons`` / ``badge_events`` need counting people and catching a 0.4 s badge flash; with ~50 clips
  the tiny model fits its train set but does not generalise (measured: event accuracy 0.19-0.25 on 16 held-out
  clips, below the control's 0.44 from always answering the majority class). Reported, not asserted. More data and
  frames did not change that (2026-11, 256 sample clips split by clip: 192 train, 64 held-out, where the majority
  event is 0.42 of the held-out set; 24 frames at 4 fps):

  =====================================================  =======  =====  =======  ======  ====
  what was trained                                       seconds  event  persons  badges  door
  =====================================================  =======  =====  =======  ======  ====
  LoRA (defaults, lr 6e-3), 10 epochs                         95   0.14     0.16    0.17  0.25
  LoRA, lr 2e-3, patch embedding + merger trained, 10 ep     105   0.41     0.34    0.48  1.00
  every weight, lr 1e-3, 10 epochs                           106   0.41     0.39    0.47  1.00
  every weight, 30 epochs, 12 frames (train loss 0.22)       185   0.36     0.36    0.39  1.00
  every weight, 4-layer 256-wide LM, 4-block vision, 10 ep   425   0.41     0.38    0.42  1.00
  =====================================================  =======  =====  =======  ======  ====

  So whole-answer exact match, which needs all five fields, cannot be the criterion for a CPU-sized model.

So the clips are split at random (stratified by event), and the criterion is the part of the task a model can only
get from the pixels and that ~50 clips can teach: which door this is (recognising the camera by day and by infrared
night), plus the output language itself (format validity). The control sees the same videos with the answers
shuffled across clips: it learns the format too, but not which door belongs to which picture.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from training.data import FrameSpec, collate, load_export  # noqa: E402
from training.evaluate import evaluate_run, generate, heldout_examples, load_fine_tuned  # noqa: E402
from training.lora import TrainConfig, train  # noqa: E402
from training.tiny import build_sample_export  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
RECIPE = TrainConfig(epochs=20, random_state=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("learning")
    export = build_sample_export(root / "export", n_clips=64, random_state=0, group_by="clip", oversample_rare=1)
    train(export, "tiny", root / "real", RECIPE)
    real = evaluate_run(root / "real", probe_clips=4)
    train(export, "tiny", root / "control", replace(RECIPE, shuffle_labels=True))
    control = evaluate_run(root / "control", compare_base=False)
    return {"export": export, "root": root, "real": real, "control": control}


def test_learns_from_the_video_above_base_and_control(runs) -> None:
    real, control = runs["real"], runs["control"]
    base, tuned, shuffled = real["base"], real["fine_tuned"], control["fine_tuned"]
    summary = {name: {"format_validity": s["format_validity"], "exact_match": s["exact_match"],
                      **{f: round(v["accuracy"], 3) for f, v in s["fields"].items()}}
               for name, s in (("base", base), ("fine_tuned", tuned), ("control", shuffled))}
    print(json.dumps(summary))  # the figures, for the record (pytest -s)
    assert base["format_validity"] == 0.0  # random init: not a single parseable answer
    # Measured over seeds 0-2 and 4 or 8 frames: validity 0.81-1.0, door 0.81-1.0, control door 0.375.
    assert tuned["format_validity"] >= 0.75
    assert tuned["fields"]["door"]["accuracy"] >= 0.75
    assert tuned["fields"]["door"]["accuracy"] >= shuffled["fields"]["door"]["accuracy"] + 0.3
    assert tuned["fields"]["door"]["accuracy"] > base["fields"]["door"]["accuracy"] + 0.5
    assert real["forgetting"]["before"] is not None and "warning" in real["forgetting"]


def test_reloaded_and_merged_adapters_predict_what_was_evaluated(runs) -> None:
    run = runs["root"] / "real"
    evaluated = [p["fine_tuned"] for p in json.loads((run / "evaluation.json").read_text())["predictions"]]
    model, processor = load_fine_tuned(run)
    card = json.loads((run / "run_card.json").read_text())
    examples = heldout_examples(load_export(runs["export"]), processor, FrameSpec(**card["hyper_parameters"]["frames"]))
    assert generate(model, processor, examples, max_new_tokens=40) == evaluated
    merged, _ = load_fine_tuned(run, merge=True)
    assert not any("lora" in name for name, _ in merged.named_modules())
    assert generate(merged, processor, examples, max_new_tokens=40) == evaluated
    batch = collate(examples[:4], processor.tokenizer.pad_token_id, padding_side="left")
    with torch.no_grad():
        difference = (model(**batch).logits - merged(**batch).logits).abs().max().item()
    assert difference < 1e-4
