"""Text similarity against sacrebleu's chrF, the reference implementation."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from curation.review.text_similarity import chrf, exact_match, text_similarity, token_f1

sacrebleu = __import__("pytest").importorskip("sacrebleu")
CHRF = sacrebleu.metrics.CHRF()
words = st.lists(st.sampled_from(["swollen", "ankle", "right", "x-ray", "rest", "ice", "a", "the", "ankle,",
                                  "Swelling", "é", "13", "mg"]), max_size=12).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(words, words)
def test_chrf_matches_sacrebleu(hypothesis: str, reference: str) -> None:
    expected = CHRF.sentence_score(hypothesis, [reference]).score / 100
    assert abs(chrf(hypothesis, reference) - expected) < 1e-9


def test_known_values_and_symmetry() -> None:
    assert chrf("the cat sat", "the cat sat") == 1.0
    assert chrf("abc", "xyz") == 0.0
    assert exact_match("Swollen  ankle ", "swollen ankle") == 1.0
    assert token_f1("x-ray of the right ankle", "X-ray right ankle today") == 2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5)
    a, b = "Swollen right ankle after a fall", "Right ankle swollen since a fall"
    assert text_similarity(a, b) == text_similarity(b, a)
    assert 0.3 < text_similarity(a, b) < 1.0
    assert text_similarity("Plan: rest", "PLAN:  rest") == 1.0
