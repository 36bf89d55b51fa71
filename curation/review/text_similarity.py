"""Similarity of free-text answers: normalised exact match, chrF and token F1.

``chrf`` reproduces sacrebleu's sentence-level chrF (character n-grams 1–6, whitespace removed, beta = 2,
effective-order averaging) on a 0–1 scale. Agreement between two annotators must not depend on who is called
the reference, so :func:`text_similarity` uses the symmetric beta = 1 form.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

CHAR_ORDER = 6


def normalise_text(text: str) -> str:
    """Unicode NFKC, lower case, runs of whitespace collapsed: what 'the same answer' means for exact match."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def exact_match(a: str, b: str) -> float:
    return float(normalise_text(a) == normalise_text(b))


def _char_ngrams(text: str, order: int) -> list[Counter]:
    line = "".join(text.split())
    return [Counter(line[i : i + n] for i in range(len(line) - n + 1)) for n in range(1, order + 1)]


def chrf(hypothesis: str, reference: str, *, beta: float = 2.0, char_order: int = CHAR_ORDER) -> float:
    """Sentence chrF in [0, 1], as sacrebleu computes it (``CHRF().sentence_score(h, [r]).score / 100``)."""
    precision_sum = recall_sum = 0.0
    effective_order = 0
    for hyp, ref in zip(_char_ngrams(hypothesis, char_order), _char_ngrams(reference, char_order), strict=True):
        n_hyp, n_ref = sum(hyp.values()), sum(ref.values())
        if n_hyp > 0 and n_ref > 0:
            matches = sum((hyp & ref).values())
            precision_sum += matches / n_hyp
            recall_sum += matches / n_ref
            effective_order += 1
    if effective_order == 0:
        return 0.0
    precision, recall = precision_sum / effective_order, recall_sum / effective_order
    if precision + recall == 0:
        return 0.0
    factor = beta**2
    return (1 + factor) * precision * recall / (factor * precision + recall)


def token_f1(a: str, b: str) -> float:
    """SQuAD-style bag-of-words F1 over normalised word tokens (punctuation dropped)."""
    tokens_a = re.findall(r"\w+", normalise_text(a))
    tokens_b = re.findall(r"\w+", normalise_text(b))
    if not tokens_a and not tokens_b:
        return 1.0
    common = sum((Counter(tokens_a) & Counter(tokens_b)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(tokens_a), common / len(tokens_b)
    return 2 * precision * recall / (precision + recall)


def text_similarity(a: str, b: str) -> float:
    """Symmetric similarity of two answers in [0, 1]: 1 for a normalised exact match, else chrF with beta = 1."""
    if normalise_text(a) == normalise_text(b):
        return 1.0
    return chrf(normalise_text(a), normalise_text(b), beta=1.0)
