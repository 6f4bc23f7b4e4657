"""Checkers for the exercises of notebook 07_soft_introvae."""

from __future__ import annotations

import math

from cranialkit.exercises.registry import Feedback, exercise


@exercise("07_fake_reward")
def fake_reward(answer: float, reconstruction: float, kl: float, beta_neg: float, beta_kl: float,
                beta_rec: float = 1.0) -> Feedback:
    """exp(−2·E_neg) for a generated volume with reconstruction error ``reconstruction`` and KL ``kl`` (nats), where
    E_neg = beta_rec·reconstruction + beta_neg·kl; dimensionless, in (0, 1]."""
    rec, kl, b_neg, b_kl, b_rec = (float(v) for v in (reconstruction, kl, beta_neg, beta_kl, beta_rec))
    energy = b_rec * rec + b_neg * kl
    expected = math.exp(-2 * energy)
    answer = float(answer)

    def near(value: float) -> bool:
        return math.isclose(answer, value, rel_tol=1e-3, abs_tol=1e-6)

    if near(expected):
        return Feedback(True, f"right: E_neg = {energy:.4f}, exp(−2·E_neg) = {expected:.4f} — the encoder lowers this "
                              "term by giving generated volumes a higher energy")
    if near(energy):
        return Feedback(False, "that is the energy E_neg itself; the exercise asks for exp(−2·E_neg)")
    if near(math.exp(-energy)):
        return Feedback(False, "the exponent is −2·E_neg, not −E_neg")
    if near(math.exp(2 * energy)):
        return Feedback(False, "sign: exp(−2·E_neg) is small for a high energy, which is what the encoder wants")
    if b_kl != b_neg and near(math.exp(-2 * (b_rec * rec + b_kl * kl))):
        return Feedback(False, "that uses β_kl (the energy of real data); generated data gets β_neg: "
                               "E_neg = β_rec·L_rec + β_neg·KL")
    if near(math.exp(-2 * b_neg * kl)):
        return Feedback(False, "E_neg also contains the reconstruction term β_rec·L_rec")
    return Feedback(False, "E_neg = β_rec·L_rec + β_neg·KL, then exp(−2·E_neg), with the values passed to check()")
