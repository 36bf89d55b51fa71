"""Exported dataset -> processor inputs: frames decoded with decord, chat-formatted, labels on the answer only.

The trainer reads an export folder, never the project store::

    OUT/hf/            DatasetDict {"train", "test"} (save_to_disk): clip_id, video (relative to OUT), prompt, output,
                       fields (JSON), group, split, repeat, frame_offset, duration_s, fps
    OUT/rubric.yaml    the rubric the outputs were rendered with (parses model outputs back into fields)
    OUT/export.json    {"rubric": {"name", "version"}, "dataset_version", ...}

Frames: ``num_frames`` uniformly over the clip (or one every ``1 / fps`` seconds, at most ``num_frames``), decoded
by presentation time with :func:`curation.media.video.sample_frames` and handed to the processor as uint8 arrays. The
per-frame pixel budget (``min_pixels`` / ``max_pixels``) is always set on the processor: the Qwen2-VL family's
defaults upscale small frames to hundreds of tokens per clip. An oversampled repeat (``repeat`` > 0) shifts its
sampling window by ``frame_offset`` seconds so it shows the model different frames of the same clip.

Example::

    export = load_export("exports/lobby-v1")
    spec = FrameSpec(num_frames=8, max_pixels=448 * 448)
    configure_processor(processor, spec)
    train = ClipDataset(export, "train", processor, spec)
    batch = collate([train[0], train[1]], pad_token_id=processor.tokenizer.pad_token_id)
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curation.errors import CliptuneError, VideoError
from curation.media.video import sample_frames
from curation.rubric import Rubric, load_rubric

REQUIRED_COLUMNS = ("clip_id", "video", "prompt", "output", "fields", "group", "split", "repeat", "frame_offset",
                    "duration_s", "fps")
IGNORE_INDEX = -100


@dataclass
class Export:
    """An export folder, opened: the dataset, its rubric and its metadata."""

    root: Path
    dataset: Any  # datasets.DatasetDict
    rubric: Rubric
    meta: dict[str, Any]

    @property
    def dataset_version(self) -> str:
        return str(self.meta.get("dataset_version", "unknown"))

    @property
    def rubric_version(self) -> str:
        return self.rubric.version


def load_export(path: str | Path) -> Export:
    """Open an export folder and check it is complete; CliptuneError saying what is missing otherwise."""
    import datasets

    root = Path(path)
    if not root.is_dir():
        raise CliptuneError(f"{root}: no such export folder (make one with `cliptune export`)")
    missing = [name for name in ("hf", "rubric.yaml", "export.json") if not (root / name).exists()]
    if missing:
        raise CliptuneError(f"{root}: not a cliptune export, {', '.join(missing)} missing (make one with "
                            "`cliptune export`)")
    try:
        meta = json.loads((root / "export.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CliptuneError(f"{root / 'export.json'}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    rubric = load_rubric(root / "rubric.yaml")
    expected = meta.get("rubric", {}).get("version")
    if expected and expected != rubric.version:
        raise CliptuneError(f"{root}: rubric.yaml is version {rubric.version} but export.json says {expected}; "
                            "export again so outputs and rubric match")
    try:
        dataset = datasets.load_from_disk(str(root / "hf"))
    except Exception as exc:  # datasets raises FileNotFoundError or its own errors for a damaged folder
        raise CliptuneError(f"{root / 'hf'}: cannot load the dataset ({exc})") from None
    if not isinstance(dataset, datasets.DatasetDict) or not {"train", "test"} <= set(dataset):
        raise CliptuneError(f"{root / 'hf'}: expected a DatasetDict with 'train' and 'test' splits")
    for split in ("train", "test"):
        absent = [c for c in REQUIRED_COLUMNS if c not in dataset[split].column_names]
        if absent:
            raise CliptuneError(f"{root / 'hf'} [{split}]: missing column(s) {absent}")
    if len(dataset["train"]) == 0:
        raise CliptuneError(f"{root}: the train split is empty")
    return Export(root, dataset, rubric, meta)


@dataclass(frozen=True)
class FrameSpec:
    """How frames are taken from a clip and how many pixels each may have."""

    num_frames: int = 8
    fps: float | None = None  # one frame every 1/fps s (at most num_frames); None: num_frames uniformly
    min_pixels: int = 28 * 28
    max_pixels: int = 448 * 448

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise CliptuneError(f"frames must be at least 1, got {self.num_frames}")
        if self.fps is not None and self.fps <= 0:
            raise CliptuneError(f"fps must be positive, got {self.fps}")
        if not 28 * 28 <= self.min_pixels <= self.max_pixels:
            raise CliptuneError(f"need 784 <= min_pixels <= max_pixels, got {self.min_pixels} and {self.max_pixels}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def configure_processor(processor: Any, spec: FrameSpec) -> None:
    """Set the per-frame pixel budget on the image and video processors (saved with the processor)."""
    from transformers.image_utils import SizeDict

    size = {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    for name in ("image_processor", "video_processor"):
        part = getattr(processor, name, None)
        if part is None:
            continue
        part.size = SizeDict(**size) if isinstance(part.size, SizeDict) else dict(size)
        for attribute, value in (("min_pixels", spec.min_pixels), ("max_pixels", spec.max_pixels)):
            if hasattr(part, attribute):  # older processors read these instead of `size`
                setattr(part, attribute, value)
        if name == "video_processor":
            part.do_sample_frames = False  # frames are sampled by time here, with decord
            if hasattr(part, "cap_pixels_per_frame"):
                part.cap_pixels_per_frame = False  # the budget above is the cap


def check_videos(export: Export, split: str) -> None:
    """CliptuneError naming the clips of ``split`` whose video file is missing or empty, before any training starts
    (a file that exists but does not decode is named when it is first decoded)."""
    missing, seen = [], set()
    for clip_id, video in zip(export.dataset[split]["clip_id"], export.dataset[split]["video"], strict=True):
        if video in seen:  # an oversampled repeat shares its clip's file
            continue
        seen.add(video)
        path = export.root / video
        if not path.is_file() or path.stat().st_size == 0:
            missing.append(f"{clip_id} ({video})")
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CliptuneError(f"{export.root}: {len(missing)} {split} video file(s) missing or empty: {shown}. "
                            "Was the export moved without its media/ folder? Export again")


def clip_frames(root: Path, row: dict[str, Any], spec: FrameSpec) -> np.ndarray:
    """Decoded RGB frames of one row, (k, H, W, 3) uint8; a repeat's window starts ``frame_offset`` s later."""
    path = root / row["video"]
    duration = float(row["duration_s"]) if row.get("duration_s") else None
    offset = float(row.get("frame_offset") or 0.0)
    if offset and duration:
        # Keep the shift under one sampling interval so the window still covers nearly the whole clip.
        interval = 1.0 / spec.fps if spec.fps else duration / spec.num_frames
        offset = offset % interval
    # Decode no larger than the processor will keep (twice the budget's side covers tall frames up to 4:1).
    max_height = int(2 * math.sqrt(spec.max_pixels))
    return sample_frames(path, num_frames=spec.num_frames, fps=spec.fps, start_s=offset, max_height=max_height)


def chat_text(processor: Any, prompt: str, *, video: bool = True) -> str:
    """The model's prompt through its chat template, ready for the answer (generation prompt added)."""
    content = ([{"type": "video"}] if video else []) + [{"type": "text", "text": prompt}]
    return processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                         add_generation_prompt=True)


def encode(
    processor: Any,
    prompt: str,
    frames: np.ndarray | None,
    *,
    answer: str | None = None,
    duration_s: float | None = None,
) -> dict[str, Any]:
    """One example as tensors (no batch dimension on token tensors). With ``answer``, ``labels`` are the answer
    and the end-of-turn token; every prompt and video token is IGNORE_INDEX, so only the answer is learned."""
    import torch
    from transformers.video_utils import VideoMetadata

    text = chat_text(processor, prompt, video=frames is not None)
    kwargs: dict[str, Any] = {}
    if frames is not None:
        seconds = duration_s if duration_s and duration_s > 0 else float(len(frames))
        # The temporal RoPE spacing comes from the sampled frame rate; tell the processor what it really is.
        metadata = VideoMetadata(total_num_frames=len(frames), fps=len(frames) / seconds, duration=seconds)
        kwargs = {"videos": [frames], "videos_kwargs": {"video_metadata": [metadata], "do_sample_frames": False}}
    batch = processor(text=[text], return_tensors="pt", **kwargs)
    example: dict[str, Any] = {"input_ids": batch["input_ids"][0]}
    if "mm_token_type_ids" in batch:
        example["mm_token_type_ids"] = batch["mm_token_type_ids"][0]
    for key in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
        if key in batch:
            example[key] = batch[key]
    if answer is not None:
        tokenizer = processor.tokenizer
        # Tokenised apart from the prompt: generation also starts right after the prompt's last token.
        answer_ids = torch.tensor(tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"])
        prompt_length = len(example["input_ids"])
        example["input_ids"] = torch.cat([example["input_ids"], answer_ids])
        example["labels"] = torch.cat([torch.full((prompt_length,), IGNORE_INDEX), answer_ids])
        if "mm_token_type_ids" in example:
            example["mm_token_type_ids"] = torch.cat([example["mm_token_type_ids"],
                                                      torch.zeros(len(answer_ids), dtype=torch.long)])
    return example


class ClipDataset:
    """Encoded examples of one split (a map-style torch dataset). ``outputs`` replaces the target texts (the
    shuffled-label control); encoded examples are kept in memory up to ``cache_bytes``."""

    def __init__(
        self,
        export: Export,
        split: str,
        processor: Any,
        spec: FrameSpec,
        *,
        with_answers: bool = True,
        outputs: list[str] | None = None,
        cache_bytes: int = 2 * 1024**3,
    ):
        self.export, self.split, self.processor, self.spec = export, split, processor, spec
        self.rows = export.dataset[split]
        self.with_answers = with_answers
        if outputs is not None and len(outputs) != len(self.rows):
            raise ValueError(f"{len(outputs)} outputs for {len(self.rows)} rows")
        self.outputs = outputs if outputs is not None else self.rows["output"]
        self._cache: dict[int, dict[str, Any]] = {}
        self._cache_left = cache_bytes
        self._lock = threading.Lock()  # the trainer's prefetch thread fills the cache while the step reads it

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index in self._cache:
            return self._cache[index]
        row = self.rows[int(index)]
        try:
            frames = clip_frames(self.export.root, row, self.spec)
        except VideoError as exc:
            raise CliptuneError(f"{self.split} clip {row['clip_id']} ({row['video']}): {exc}. Re-export, or drop "
                                "the clip from the project and export again") from None
        example = encode(self.processor, row["prompt"], frames, duration_s=row["duration_s"],
                         answer=self.outputs[index] if self.with_answers else None)
        example["clip_id"] = int(row["clip_id"])
        size = sum(v.numel() * v.element_size() for v in example.values() if hasattr(v, "numel"))
        with self._lock:
            if index in self._cache:  # another thread encoded it meanwhile: keep one copy
                return self._cache[index]
            if size <= self._cache_left:
                self._cache[index] = example
                self._cache_left -= size
        return example


    def forget_pixels(self, index: int, example: dict[str, Any]) -> None:
        """Keep ``example`` (this index's) without its pixels from now on: its video features are cached elsewhere.

        What is left (token ids, labels, grid sizes) is a few kilobytes, so it is kept even when the budget for
        whole examples is spent; the clip is then never decoded again.
        """
        with self._lock:
            kept = self._cache.get(index)
            if kept is not None and "pixel_values_videos" in kept:
                pixels = kept.pop("pixel_values_videos")
                self._cache_left += pixels.numel() * pixels.element_size()
            elif kept is None:
                self._cache[index] = {k: v for k, v in example.items() if k != "pixel_values_videos"}

def collate(examples: list[dict[str, Any]], pad_token_id: int, *, padding_side: str = "right") -> dict[str, Any]:
    """Pad token tensors (right for training, left for generation) and concatenate the vision tensors."""
    import torch

    length = max(len(e["input_ids"]) for e in examples)

    def pad(tensors: list[torch.Tensor], value: int) -> torch.Tensor:
        rows = []
        for tensor in tensors:
            filler = torch.full((length - len(tensor),), value, dtype=tensor.dtype)
            rows.append(torch.cat([tensor, filler] if padding_side == "right" else [filler, tensor]))
        return torch.stack(rows)

    batch: dict[str, Any] = {
        "input_ids": pad([e["input_ids"] for e in examples], pad_token_id),
        "attention_mask": pad([torch.ones(len(e["input_ids"]), dtype=torch.long) for e in examples], 0),
    }
    if "labels" in examples[0]:
        batch["labels"] = pad([e["labels"] for e in examples], IGNORE_INDEX)
    if "mm_token_type_ids" in examples[0]:
        batch["mm_token_type_ids"] = pad([e["mm_token_type_ids"] for e in examples], 0)
    return {**batch, **vision_tensors(examples)}


def vision_tensors(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """The examples' video tensors concatenated in order (text-only examples, such as probe questions, have none)."""
    import torch

    batch = {}
    for key in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
        present = [e[key] for e in examples if key in e]
        if present:
            batch[key] = torch.cat(present)
    return batch
