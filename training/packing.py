"""Several clips in one sequence, each attending only to itself: no padding, and bigger matrix products per step.

A padded batch spends compute on padding whenever clips differ in length (a longer clip, more frames by fps, a
longer answer). A packed row concatenates the examples instead. Each keeps its own positions: the multimodal RoPE
positions (temporal, height, width) are computed per example, exactly as for the example alone, and a fourth row
of plain text positions, restarting at 0 for each example, goes in front. transformers reads that first row to
build a block-diagonal causal mask (``attention_mask`` must then be None), so no token attends across examples.

The loss needs nothing special: the first token of each example is a prompt token (label -100, checked), so no
position learns to predict the next example.

Example::

    rows = pack([dataset[i] for i in indices], rope_index=inner_model(model).get_rope_index)
    loss, n_answer_tokens = answer_loss(model, batch_to(rows, device, dtype))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from training.data import IGNORE_INDEX, vision_tensors

RopeIndex = Callable[..., tuple[Any, Any]]


def example_positions(example: dict[str, Any], rope_index: RopeIndex) -> Any:
    """(4, L) positions of one example: text positions, then the model's (temporal, height, width) positions."""
    import torch

    ids = example["input_ids"]
    text = torch.arange(len(ids), dtype=torch.long)
    if "video_grid_thw" not in example:  # a text-only example: all four rows are plain positions
        return text.expand(4, -1)
    seconds = example.get("second_per_grid_ts")
    mrope, _ = rope_index(ids[None], example["mm_token_type_ids"][None], video_grid_thw=example["video_grid_thw"],
                          second_per_grid_ts=seconds)
    return torch.cat([text[None], mrope[:, 0].to(torch.long)])


def pack(examples: list[dict[str, Any]], rope_index: RopeIndex) -> dict[str, Any]:
    """One row holding every example (batch dimension 1), with packed positions and no attention mask."""
    import torch

    if not examples:
        raise ValueError("nothing to pack")
    if any("labels" in e and int(e["labels"][0]) != IGNORE_INDEX for e in examples):
        raise ValueError("a packed example starts with a labelled token (its prompt is missing): the token before "
                         "it, from the previous example, would learn to predict it")
    batch: dict[str, Any] = {
        "input_ids": torch.cat([e["input_ids"] for e in examples])[None],
        "position_ids": torch.cat([example_positions(e, rope_index) for e in examples], dim=1)[:, None],
    }
    if all("labels" in e for e in examples):
        batch["labels"] = torch.cat([e["labels"] for e in examples])[None]
    if any("mm_token_type_ids" in e for e in examples):
        batch["mm_token_type_ids"] = torch.cat([
            e.get("mm_token_type_ids", torch.zeros_like(e["input_ids"])) for e in examples])[None]
    return {**batch, **vision_tensors(examples)}

