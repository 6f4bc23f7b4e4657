"""Checkers for the exercises of notebook 06_introvae."""

from __future__ import annotations

import math

from cranialkit.exercises.registry import Feedback, exercise


@exercise("06_encoder_hinge")
def encoder_hinge(answer: float, kl_reconstructed: float, kl_fake: float, margin: float, alpha: float) -> Feedback:
    """The encoder's adversarial term α·([m − KL(x_r)]⁺ + [m − KL(x_p)]⁺) for the given KL values (nats)."""
    kl_r, kl_p, m, a = float(kl_reconstructed), float(kl_fake), float(margin), float(alpha)
    expected = a * (max(0.0, m - kl_r) + max(0.0, m - kl_p))
    answer = float(answer)

    def near(value: float) -> bool:
        return math.isclose(answer, value, rel_tol=1e-3, abs_tol=1e-3)

    if near(expected):
        if expected == 0:
            return Feedback(True, "right: 0 — both KLs are above the margin, so the encoder gets no more reward for "
                                  "raising them: the game has stopped pushing")
        return Feedback(True, f"right: {expected:.3f} — the encoder still gains by raising the KL of the decoder's "
                              "outputs towards the margin")
    if near(a * ((m - kl_r) + (m - kl_p))):
        return Feedback(False, "[a]⁺ = max(0, a): a KL above the margin contributes 0, never a negative amount")
    if near(expected / a if a else math.nan):
        return Feedback(False, "multiply by α (alpha), the weight of the adversarial terms")
    if near(a * (max(0.0, kl_r - m) + max(0.0, kl_p - m))):
        return Feedback(False, "the other way round: [m − KL]⁺, the encoder is rewarded until the KL reaches m")
    if near(a * max(0.0, m - kl_r)) or near(a * max(0.0, m - kl_p)):
        return Feedback(False, "there are two terms: one for the reconstructions x_r and one for the samples x_p")
    return Feedback(False, "α · (max(0, m − KL_rec) + max(0, m − KL_fake)) with the values passed to check()")
