"""Latent diffusion: KL autoencoder, schedulers, latent scale, denoiser training + exact resume, sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_vqvae import shell_pairs

from cranialkit.generative import available_generators, get_generator, load_generator
from cranialkit.generative.autoencoder_kl import KLAutoencoder
from cranialkit.generative.ldm import LDMVAE, LDMVQVAE
from cranialkit.generative.postprocess import write_generated_dataset
from cranialkit.generative.sampling import valid_fraction

TINY_AE = dict(levels=2, channels=[8, 16])
TINY = dict(resolution=16, denoiser_channels=[16, 16], norm_num_groups=8)


@pytest.fixture(autouse=True)
def _few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and never oversubscribes a loaded machine
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def volumes() -> np.ndarray:
    return shell_pairs(6)


@pytest.fixture(scope="module")
def trained_vq(volumes) -> LDMVQVAE:
    torch.set_num_threads(1)
    model = LDMVQVAE(autoencoder=dict(TINY_AE, num_embeddings=16, embedding_dim=3), **TINY)
    model.fit(volumes, steps=4, batch_size=3, device="cpu", progress=False, autoencoder_steps=3)
    return model


def test_registry_names():
    assert {"vqvae", "ldm_vqvae", "ldm_vae"} <= set(available_generators())
    assert get_generator("ldm-vqvae") is LDMVQVAE and get_generator("ldm_vae") is LDMVAE


def test_kl_autoencoder_shapes_and_losses(volumes):
    model = KLAutoencoder(resolution=16, latent_channels=2, **TINY_AE)
    assert model.latent_shape == (2, 4, 4, 4)
    x = torch.from_numpy(volumes[:2])
    mu, logvar = model.posterior(x)
    assert mu.shape == logvar.shape == (2, 2, 4, 4, 4)
    torch.testing.assert_close(model.encode(x), mu)
    probs = model.decode(mu)
    assert probs.shape == (2, 2, 16, 16, 16) and 0 <= probs.min() and probs.max() <= 1
    history = model.fit(volumes, steps=30, batch_size=3, lr=3e-3, device="cpu", progress=False)
    assert set(history) == {"loss", "bce", "dice", "kl"} and all(k >= 0 for k in history["kl"])
    assert np.mean(history["loss"][-5:]) < 0.9 * np.mean(history["loss"][:5])
    with pytest.raises(ValueError, match="kl_weight"):
        KLAutoencoder(resolution=16, kl_weight=-1.0, **TINY_AE)


def test_constructor_checks_the_denoiser_fits_the_latent_grid():
    with pytest.raises(ValueError, match="cannot halve"):
        LDMVAE(resolution=16, autoencoder=TINY_AE, denoiser_channels=[16, 16, 16, 16], norm_num_groups=8)
    with pytest.raises(ValueError, match="norm_num_groups"):
        LDMVAE(resolution=16, autoencoder=TINY_AE, denoiser_channels=[12, 16], norm_num_groups=8)
    with pytest.raises(ValueError, match="resolution"):
        LDMVAE(resolution=16, autoencoder=dict(TINY_AE, resolution=32))


def test_schedulers():
    model = LDMVAE(autoencoder=TINY_AE, **TINY)
    ddim = model.make_scheduler("ddim")
    ddim.set_timesteps(10)
    assert int(ddim.timesteps[0]) == 999 and len(ddim.timesteps) == 10  # "trailing": starts at pure noise
    ddpm = model.make_scheduler("ddpm")
    ddpm.set_timesteps(1000)
    assert len(ddpm.timesteps) == 1000
    alphas = ddpm.alphas_cumprod.numpy()
    assert np.all(np.diff(alphas) < 0) and alphas[0] > 0.99 and alphas[-1] < 1e-3
    with pytest.raises(ValueError, match="unknown scheduler"):
        model.make_scheduler("euler")
    with pytest.raises(ValueError, match="pure noise"):  # 100 steps of these small betas keep 40 % of the signal
        LDMVAE(autoencoder=TINY_AE, **dict(TINY, num_train_timesteps=100))


class _OracleDenoiser(torch.nn.Module):
    """Outputs the exact training target for a known clean latent ``z0``, whatever the prediction type."""

    def __init__(self, model, z0: torch.Tensor):
        super().__init__()
        self.alphas, self.target, self.z0 = model.train_scheduler.alphas_cumprod, model._training_target, z0

    def forward(self, zt: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        alpha = self.alphas[timesteps].view(-1, 1, 1, 1, 1)
        noise = (zt - alpha.sqrt() * self.z0) / (1 - alpha).sqrt()
        return self.target(self.z0.expand_as(zt), noise, timesteps)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_each_prediction_type_trains_on_its_target_and_samples_back_z0(prediction_type):
    model = LDMVAE(autoencoder=TINY_AE, prediction_type=prediction_type, **TINY)
    z0, noise = torch.randn(2, *model.latent_shape), torch.randn(2, *model.latent_shape)
    t = torch.tensor([10, 900])
    alpha = model.train_scheduler.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
    expected = {"epsilon": noise, "sample": z0, "v_prediction": alpha.sqrt() * noise - (1 - alpha).sqrt() * z0}
    assert torch.allclose(model._training_target(z0, noise, t), expected[prediction_type], atol=1e-5)
    # With a perfect denoiser, deterministic DDIM lands on the clean latent from any starting noise (up to the
    # noise of the last step, t = 0: √(1 − ᾱ₀) ≈ 0.04).
    model.denoiser = _OracleDenoiser(model, z0[:1])
    out = model.denoise(torch.randn(1, *model.latent_shape), scheduler="ddim", num_inference_steps=10, device="cpu")
    assert float((out - z0[:1]).abs().mean()) < 0.05 and float((out - z0[:1]).abs().max()) < 0.25


def test_prediction_type_is_checked():
    with pytest.raises(ValueError, match="prediction_type"):
        LDMVAE(autoencoder=TINY_AE, prediction_type="noise", **TINY)


def test_untrained_model_refuses_to_sample():
    model = LDMVQVAE(autoencoder=TINY_AE, **TINY)
    with pytest.raises(RuntimeError, match="latent scale"):
        model.sample(2, device="cpu")


def test_fit_sets_unit_variance_latent_scale(trained_vq, volumes):
    z = trained_vq.encode(torch.from_numpy(volumes))
    assert float(trained_vq.latent_scale) > 0
    assert float(z.std()) == pytest.approx(1.0, rel=1e-4)
    assert trained_vq.latent_shape == (3, 4, 4, 4)


def test_sampling_shapes_determinism_and_validation(trained_vq):
    a = trained_vq.sample(3, "random", seed=1, num_inference_steps=5, device="cpu")
    assert a.shape == (3, 2, 16, 16, 16) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    np.testing.assert_array_equal(a, trained_vq.sample(3, "random", seed=1, num_inference_steps=5, device="cpu"))
    uds = trained_vq.sample(3, "uds", num_inference_steps=5, device="cpu")
    np.testing.assert_array_equal(uds, trained_vq.sample(3, "uds", seed=7, num_inference_steps=5, device="cpu"))
    noise = torch.randn((2, *trained_vq.latent_shape), generator=torch.Generator().manual_seed(0))
    ddpm_1 = trained_vq.denoise(noise, "ddpm", 10, seed=1, device="cpu")
    ddpm_2 = trained_vq.denoise(noise, "ddpm", 10, seed=2, device="cpu")
    assert not torch.equal(ddpm_1, ddpm_2)  # fresh noise at every DDPM step
    ddim_1 = trained_vq.denoise(noise, "ddim", 10, seed=1, device="cpu")
    torch.testing.assert_close(ddim_1, trained_vq.denoise(noise, "ddim", 10, seed=2, device="cpu"))
    with pytest.raises(ValueError, match="num_inference_steps"):
        trained_vq.denoise(noise, "ddim", 0, device="cpu")
    with pytest.raises(ValueError, match="noise must have shape"):
        trained_vq.denoise(noise[:, :1], "ddim", 5, device="cpu")


def test_forward_noising_destroys_the_latent_step_by_step(trained_vq, volumes):
    zt = trained_vq.noised_latents(volumes[0], [0, 100, 500, 999], seed=0)
    z0 = trained_vq.encode(torch.from_numpy(volumes[:1]))[0]
    assert zt.shape == (4, *trained_vq.latent_shape)
    corr = [float(np.corrcoef(z.ravel(), z0.ravel())[0, 1]) for z in zt]
    assert corr[0] > 0.99 and corr[0] > corr[1] > corr[2] > corr[3]
    with pytest.raises(ValueError, match="timesteps"):
        trained_vq.noised_latents(volumes[0], [1000])


def test_denoiser_resume_matches_an_uninterrupted_run(volumes, tmp_path):
    """Stop after 3 of 6 denoiser steps, rebuild the model from scratch, resume: same weights and history."""
    def build():
        torch.manual_seed(123)
        return LDMVAE(autoencoder=dict(TINY_AE, latent_channels=2), **TINY)

    kwargs = dict(batch_size=3, device="cpu", progress=False, checkpoint_every=2, seed=5, autoencoder_steps=4)
    full = build()
    full_history = full.fit(volumes, steps=6, checkpoint_path=tmp_path / "full.pt", **kwargs)
    assert (tmp_path / "full_autoencoder.pt").is_file() and (tmp_path / "full.pt").is_file()
    assert len(full_history["autoencoder_loss"]) == 4 and len(full_history["mse"]) == 6

    part = build()
    part.fit(volumes, steps=3, checkpoint_path=tmp_path / "part.pt", **kwargs)
    resumed = build()
    history = resumed.fit(volumes, steps=6, checkpoint_path=tmp_path / "part.pt", **kwargs)
    assert history["mse"] == full_history["mse"]
    for key, value in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=f"{key} differs after resume")
    ckpt = torch.load(tmp_path / "part.pt", weights_only=True)
    assert ckpt["step"] == 6 and ckpt["name"] == "ldm_vae"


def test_save_load_and_postprocess_into_cases(trained_vq, tmp_path):
    path = trained_vq.save(tmp_path / "ldm.pt")
    loaded = load_generator(path, device="cpu")
    assert isinstance(loaded, LDMVQVAE) and float(loaded.latent_scale) == float(trained_vq.latent_scale)
    a = trained_vq.sample(2, "uds", num_inference_steps=4, device="cpu")
    np.testing.assert_allclose(loaded.sample(2, "uds", num_inference_steps=4, device="cpu"), a, atol=1e-6)
    # whatever the tiny model makes, post-processing accepts or rejects it consistently with valid_fraction
    counts = write_generated_dataset(a, tmp_path / "generated", name="ldm_vqvae", spacing_mm=2.0)
    assert counts["written"] + counts["invalid"] == 2
    assert counts["written"] == round(valid_fraction(a) * 2)
