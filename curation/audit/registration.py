"""Registering two still pictures that may be rescaled (0.5-2x) or lightly cropped (up to ``MAX_CROP`` a side) copies
of each other, so that their still detail can be compared where it should agree.

The crop box is found by a coarse-to-fine search on small, blurred, brightness-matched pictures (the box of one
picture that, resized, best matches the other, in either direction); the caller then compares the two at the
smaller picture's resolution.
"""

from __future__ import annotations

import itertools

import numpy as np

MAX_CROP = 0.05  # share of a side
SEARCH_WIDTH = 48  # pixels: the search runs on pictures this wide
STEPS = (0.025, 0.0125, 0.00625)  # coarse to fine steps of the crop search, share of a side


def _small(picture: np.ndarray, width: int) -> np.ndarray:
    import cv2

    h, w = picture.shape
    size = (width, max(8, int(round(width * h / w))))
    return cv2.GaussianBlur(cv2.resize(picture.astype(np.float32), size, interpolation=cv2.INTER_AREA), (0, 0), 1.0)


def crop(picture: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """``picture`` without the shares ``box`` = (left, top, right, bottom) of its sides."""
    h, w = picture.shape[:2]
    left, top, right, bottom = (int(round(share * side)) for share, side in zip(box, (w, h, w, h), strict=True))
    return picture[top:h - bottom, left:w - right]


def _cost(big: np.ndarray, small: np.ndarray, box: tuple[float, float, float, float]) -> float:
    import cv2

    part = crop(big, box)
    resized = cv2.resize(part, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    return float(np.mean(np.abs(_standard(resized) - small)))


def _standard(picture: np.ndarray) -> np.ndarray:
    """Zero mean, unit spread: brightness and contrast changes matched cheaply (the search runs hundreds)."""
    return (picture - picture.mean()) / (picture.std() + 1e-6)


def best_box(outer: np.ndarray, inner: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
    """The crop of ``outer`` that best matches ``inner`` (both grey), and its mean absolute difference."""
    small = _standard(_small(inner, SEARCH_WIDTH))
    # the outer picture a little larger, so that a crop of a few per cent still has pixels to spare
    big = _small(outer, int(SEARCH_WIDTH * 2))
    best, cost = (0.0, 0.0, 0.0, 0.0), _cost(big, small, (0.0, 0.0, 0.0, 0.0))
    for step in STEPS:
        centre = best
        for move in itertools.product((-step, 0.0, step), repeat=4):
            box = tuple(float(np.clip(c + m, 0.0, MAX_CROP)) for c, m in zip(centre, move, strict=True))
            value = _cost(big, small, box)
            if value < cost:
                best, cost = box, value
    return best, cost


def refine(outer: np.ndarray, inner: np.ndarray, box: tuple[float, float, float, float]
           ) -> tuple[tuple[float, float, float, float], float]:
    """The box moved a pixel at a time, side by side, on the full pictures while that lowers the difference: the
    coarse search is only good to a pixel or two of a small picture, and still detail is compared at full size."""
    import cv2

    h, w = outer.shape
    target = _standard(cv2.GaussianBlur(inner.astype(np.float32), (0, 0), 0.7))
    blurred = cv2.GaussianBlur(outer.astype(np.float32), (0, 0), 0.7)
    limit = (int(MAX_CROP * w) + 1, int(MAX_CROP * h) + 1, int(MAX_CROP * w) + 1, int(MAX_CROP * h) + 1)

    def cost(sides: tuple[int, ...]) -> float:
        left, top, right, bottom = sides
        part = blurred[top:h - bottom, left:w - right]
        resized = cv2.resize(part, (inner.shape[1], inner.shape[0]), interpolation=cv2.INTER_AREA)
        return float(np.mean(np.abs(_standard(resized) - target)))

    sides = (int(round(box[0] * w)), int(round(box[1] * h)), int(round(box[2] * w)), int(round(box[3] * h)))
    best = cost(sides)
    for _ in range(4 * max(limit)):
        moves = [tuple(v + d if k == i else v for k, v in enumerate(sides)) for i in range(4) for d in (-1, 1)]
        moves = [m for m in moves if all(0 <= v <= limit[k] for k, v in enumerate(m))]
        value, candidate = min((cost(m), m) for m in moves)
        if value >= best:
            break
        best, sides = value, candidate
    return (sides[0] / w, sides[1] / h, sides[2] / w, sides[3] / h), best


def register(a: np.ndarray, b: np.ndarray) -> tuple[str, tuple[float, float, float, float]]:
    """Which picture is the outer one ("a" or "b") and the crop box of it that matches the other (shares of its
    sides, to a pixel)."""
    box_a, cost_a = refine(a, b, best_box(a, b)[0])
    box_b, cost_b = refine(b, a, best_box(b, a)[0])
    return ("a", box_a) if cost_a <= cost_b else ("b", box_b)
