"""VQ-VAE generator: codebook statistics, shapes, training, the per-position code prior, save/load."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cranialkit.generative import get_generator, load_generator
from cranialkit.generative.vqvae import VQVAEGenerator, check_levels, codebook_usage


def shell_pairs(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """Toy (defective skull, implant) pairs: ellipsoidal shells with a cap cut off as the implant."""
    rng = np.random.default_rng(seed)
    grid = (np.indices((size,) * 3).astype(np.float32) - (size - 1) / 2) / (size / 2)
    out = np.zeros((n, 2, size, size, size), np.float32)
    for i in range(n):
        radii = rng.uniform(0.6, 0.9, 3)
        r = np.sqrt(((grid / radii[:, None, None, None]) ** 2).sum(0))
        shell = (r < 1.0) & (r > 0.7)
        direction = rng.normal(size=3)
        cap = np.tensordot(direction / np.linalg.norm(direction), grid, axes=1) > rng.uniform(0.3, 0.5)
        out[i, 0] = shell & ~cap
        out[i, 1] = shell & cap
    return out


def tiny_vqvae(**kwargs) -> VQVAEGenerator:
    config = dict(resolution=16, levels=2, channels=[8, 16], num_embeddings=16, embedding_dim=3)
    config.update(kwargs)
    return VQVAEGenerator(**config)


@pytest.fixture(autouse=True)
def _few_threads_and_seed():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and never oversubscribes a loaded machine
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def test_codebook_usage_counts_perplexity_and_dead_codes():
    usage = codebook_usage(np.array([[0, 0], [1, 1]]), num_embeddings=4)
    assert usage["counts"].tolist() == [2, 2, 0, 0]
    assert usage["perplexity"] == pytest.approx(2.0)
    assert (usage["used"], usage["dead"]) == (2, 2)
    uniform = codebook_usage(torch.arange(8), num_embeddings=8)
    assert uniform["perplexity"] == pytest.approx(8.0) and uniform["dead"] == 0
    assert codebook_usage([3, 3, 3], 5)["perplexity"] == pytest.approx(1.0)


def test_codebook_usage_rejects_bad_indices():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        codebook_usage(np.array([0, 4]), num_embeddings=4)
    with pytest.raises(ValueError, match="at least one"):
        codebook_usage(np.array([], dtype=int), num_embeddings=4)


def test_levels_must_divide_the_resolution():
    assert check_levels(32, 2) == 8 and check_levels(128, 3) == 16
    with pytest.raises(ValueError, match="not divisible"):
        check_levels(24, 4)
    with pytest.raises(ValueError, match="one entry per level"):
        VQVAEGenerator(resolution=16, levels=2, channels=[8])


def test_registered_shapes_encode_decode():
    assert get_generator("vqvae") is VQVAEGenerator
    model = tiny_vqvae()
    assert model.latent_shape == (3, 4, 4, 4)
    x = torch.from_numpy(shell_pairs(2))
    z = model.encode(x)
    assert z.shape == (2, 3, 4, 4, 4)
    codebook = model.net.quantizer.quantizer.embedding.weight
    # every latent vector of the encoding is a codebook entry
    flat = z.permute(0, 2, 3, 4, 1).reshape(-1, 3)
    distances = torch.cdist(flat, codebook, compute_mode="donot_use_mm_for_euclid_dist")
    assert distances.min(dim=1).values.max() < 1e-5
    probs = model.decode(z)
    assert probs.shape == (2, 2, 16, 16, 16) and 0 <= probs.min() and probs.max() <= 1


def test_training_lowers_the_loss_and_reports_codebook_use():
    x = shell_pairs(8)
    model = tiny_vqvae()
    history = model.fit(x, steps=40, batch_size=4, lr=3e-3, device="cpu", progress=False)
    assert (model.net.quantizer.quantizer.ema_cluster_size > 0).all()
    assert set(history) >= {"loss", "bce", "dice", "commitment", "perplexity"}
    assert len(history["loss"]) == 40
    assert np.mean(history["loss"][-5:]) < 0.8 * np.mean(history["loss"][:5])
    usage = model.codebook_usage(x)
    assert usage["counts"].sum() == 8 * 4**3
    assert 1.0 <= usage["perplexity"] <= usage["used"] <= 16
    assert usage["used"] + usage["dead"] == 16


def test_dead_codes_are_restarted_on_encoder_vectors():
    model = tiny_vqvae(dead_code_threshold=0.5)
    quantizer = model.net.quantizer.quantizer
    quantizer.ema_cluster_size.fill_(0.0)
    quantizer.ema_cluster_size[0] = 10.0  # only code 0 is alive
    alive = quantizer.embedding.weight[0].clone()
    encodings = torch.randn(2, 3, 4, 4, 4)
    assert model.restart_dead_codes(encodings) == 15
    flat = encodings.permute(0, 2, 3, 4, 1).reshape(-1, 3)
    moved = quantizer.embedding.weight[1:]
    distances = torch.cdist(moved, flat, compute_mode="donot_use_mm_for_euclid_dist")
    assert distances.min(dim=1).values.max() < 1e-6  # every dead code now sits on an encoder vector
    torch.testing.assert_close(quantizer.embedding.weight[0], alive)
    torch.testing.assert_close(quantizer.ema_w[1:], moved)
    assert model.restart_dead_codes(encodings) == 0


def test_code_prior_reproduces_the_only_training_codes():
    """With one training volume and almost no smoothing, every prior draw picks that volume's codes."""
    x = shell_pairs(1)
    model = tiny_vqvae()
    model.fit_code_prior(x, smoothing=1e-9)
    with torch.no_grad():
        expected = model.decode(model.encode(torch.from_numpy(x))).numpy()
    for sampler in ("random", "uds"):
        samples = model.sample(3, sampler=sampler, device="cpu")
        assert samples.shape == (3, 2, 16, 16, 16) and samples.dtype == np.float32
        np.testing.assert_allclose(samples, np.repeat(expected, 3, axis=0), atol=1e-5)


def test_code_prior_sampling_is_deterministic_for_uds_and_seeded_for_random():
    x = shell_pairs(6)
    model = tiny_vqvae()
    model.fit_code_prior(x, smoothing=0.5)
    np.testing.assert_array_equal(model.sample(4, "uds", device="cpu"), model.sample(4, "uds", seed=9, device="cpu"))
    a, b = model.sample(4, "random", seed=1, device="cpu"), model.sample(4, "random", seed=2, device="cpu")
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, model.sample(4, "random", seed=1, device="cpu"))


def test_save_and_load_round_trip(tmp_path):
    x = shell_pairs(4)
    model = tiny_vqvae()
    model.fit(x, steps=3, batch_size=2, device="cpu", progress=False)
    path = model.save(tmp_path / "vq.pt")
    loaded = load_generator(path, device="cpu")
    assert isinstance(loaded, VQVAEGenerator) and loaded.config == model.config
    z = model.encode(torch.from_numpy(x))
    torch.testing.assert_close(loaded.decode(z), model.decode(z))
    torch.testing.assert_close(loaded.code_log_prior, model.code_log_prior)
    assert math.isfinite(float(loaded.code_log_prior.sum()))
