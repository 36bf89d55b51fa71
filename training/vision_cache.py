"""Video features of a frozen vision tower, computed once per training example and reused every later epoch.

With LoRA on the language model only (the default for a real checkpoint), the vision tower's weights never change,
so its output for a given example is the same in every epoch: recomputing it is pure waste. The Qwen2.5-VL vision
tower is also slow per FLOP (windowed attention in many small pieces), so on a GPU the saving is larger than its
share of the FLOPs suggests.

The cached features go to the language model through ``mm_encoder_outputs``, the hook transformers provides for
precomputed vision outputs; ``input_ids``, ``video_grid_thw`` and ``mm_token_type_ids`` stay in the batch, so the
multimodal RoPE positions are computed exactly as without the cache.

Example::

    cache = VisionFeatureCache(model)               # features kept in up to a quarter of the machine's memory
    batch = cache.apply(batch, keys=[12, 40, 7])   # pixel_values_videos replaced by the cached features
    loss, _ = answer_loss(model, batch)
"""

from __future__ import annotations

import os
from typing import Any

from curation.errors import CliptuneError


def inner_model(model: Any) -> Any:
    """The Qwen2-VL-family ``...Model`` (vision tower, language model, ``get_rope_index``) inside a possibly
    peft-wrapped ``...ForConditionalGeneration``."""
    wrapped = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(wrapped, "model", wrapped)


def vision_tower(model: Any) -> Any:
    """The vision tower of a (possibly peft-wrapped) Qwen2-VL-family model."""
    tower = getattr(inner_model(model), "visual", None)
    if tower is None:
        raise CliptuneError(f"{type(model).__name__} has no vision tower at .model.visual; vision features "
                            "cannot be cached for it (set cache_vision off)")
    return tower


def vision_is_frozen(model: Any) -> bool:
    """True when no parameter of the vision tower is trained (no vision LoRA, not in modules_to_save)."""
    return not any(parameter.requires_grad for parameter in vision_tower(model).parameters())


def default_cache_bytes() -> int:
    """A quarter of the machine's memory: 7 MB a clip for Qwen2.5-VL-7B at 8 frames of 448 x 448, so a 128 GiB
    GPU server keeps the features of about 4,500 clips."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):  # not a POSIX system: a fixed 4 GiB
        return 4 * 1024**3


class VisionFeatureCache:
    """Per-example video features, kept on the CPU up to ``max_bytes`` (default: a quarter of the machine's
    memory); beyond that they are recomputed.

    ``keys`` name examples whose pixels never change between epochs (the dataset index: an oversampled repeat
    is its own row, with its own frames). Refuses a model whose vision tower is being trained.
    """

    def __init__(self, model: Any, *, max_bytes: int | None = None):
        if not vision_is_frozen(model):
            raise CliptuneError("the vision tower is being trained (vision LoRA or modules_to_save), so its "
                                "features change every step and cannot be cached; turn cache_vision off")
        self.model = model
        self.max_bytes = max_bytes if max_bytes is not None else default_cache_bytes()
        self.stored_bytes = 0
        self.hits = 0
        self.misses = 0
        self._features: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self._features)

    def __contains__(self, key: Any) -> bool:
        return key in self._features

    def _compute(self, pixel_values: Any, grid_thw: Any) -> list[Any]:
        import torch

        with torch.no_grad():
            outputs = inner_model(self.model).get_video_features(pixel_values, grid_thw, return_dict=True)
        return [features.detach() for features in outputs.pooler_output]

    def apply(self, batch: dict[str, Any], keys: list[Any], with_pixels: list[bool] | None = None) -> dict[str, Any]:
        """``batch`` with ``pixel_values_videos`` replaced by cached (or freshly computed) features.

        ``keys`` has one entry per video in the batch, in the order of ``video_grid_thw``; ``with_pixels`` says
        which of those videos have their pixels in ``pixel_values_videos`` (default: all). A video whose pixels
        are absent must be cached already. Call it inside the training step's autocast context, so features are
        computed in the step's precision.
        """
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        if "video_grid_thw" not in batch:
            return batch
        grids = batch["video_grid_thw"]
        with_pixels = with_pixels if with_pixels is not None else [True] * len(keys)
        if not len(keys) == len(with_pixels) == len(grids):
            raise ValueError(f"{len(keys)} keys and {len(with_pixels)} pixel flags for {len(grids)} videos")
        patches = grids.prod(-1).tolist()
        offsets, offset = [], 0
        for count, present in zip(patches, with_pixels, strict=True):
            offsets.append(offset)
            offset += count if present else 0
        if offset != (len(batch["pixel_values_videos"]) if "pixel_values_videos" in batch else 0):
            raise ValueError("pixel_values_videos does not hold the patches of the videos flagged with_pixels")
        missing = [i for i, key in enumerate(keys) if key not in self._features]
        without = [keys[i] for i in missing if not with_pixels[i]]
        if without:
            raise ValueError(f"no pixels and no cached features for {without}")
        computed: dict[int, Any] = {}
        if missing:
            pixels = torch.cat([batch["pixel_values_videos"][offsets[i]:offsets[i] + patches[i]] for i in missing])
            for i, features in zip(missing, self._compute(pixels, grids[missing]), strict=True):
                computed[i] = features
                size = features.numel() * features.element_size()
                if keys[i] not in self._features and self.stored_bytes + size <= self.max_bytes:
                    self._features[keys[i]] = features.to("cpu")
                    self.stored_bytes += size
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        device = batch["input_ids"].device
        features = [computed[i] if i in computed else self._features[key].to(device, non_blocking=True)
                    for i, key in enumerate(keys)]
        out = {k: v for k, v in batch.items() if k != "pixel_values_videos"}
        out["mm_encoder_outputs"] = {"video": BaseModelOutputWithPooling(pooler_output=tuple(features))}
        return out
