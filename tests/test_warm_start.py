"""Warm starts of IntroVAE and Soft-IntroVAE from a VAE: the VAE's training is their warm-up."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import shell_pairs

from cranialkit.generative import get_generator
from cranialkit.generative.recipes import checkpoint_path, warm_start_from_vae
from cranialkit.generative.warm_start import warmup_vae_config, write_warmup_checkpoint

SMALL = {"resolution": 16, "latent_dim": 8, "base_channels": 4, "max_channels": 16, "output": "skull_and_cap"}
CONFIGS = {"introvae": {"beta": 1 / 3e-3, "margin": 25.0}, "soft_introvae": {"beta_kl": 3e-3, "beta_neg": 1.2e-2}}
WARMUP = 3


@pytest.fixture(autouse=True)
def _few_threads(tmp_path, monkeypatch):
    torch.set_num_threads(2)
    monkeypatch.setenv("CRANIALKIT_DATA_DIR", str(tmp_path / "data"))


def _model(name: str, **extra):
    return get_generator(name)(**SMALL, **{**CONFIGS[name], **extra}, warmup_steps=WARMUP)


@pytest.mark.parametrize("name, extra", [("introvae", {"beta": 1.0}), ("soft_introvae", {})])
def test_a_vae_checkpoint_is_the_warm_up(name, extra, tmp_path):
    """Warming up by itself, or starting from a VAE trained with the same settings from the same weights, gives
    the same weights, Adam moments, loss history and step: the warm-up *is* that VAE's training. (Exactly so when
    the warm-up loss is the VAE's loss times 1 — Soft-IntroVAE with β_rec = 1, IntroVAE with β = 1; at another
    scale Adam's ε makes the two differ on weights whose gradients are below ≈ 1e-7, see the next test.)"""
    volumes = shell_pairs()
    torch.manual_seed(0)
    own = _model(name, **extra)
    initial = {k: v.clone() for k, v in own.state_dict().items()}
    own.fit(volumes, steps=WARMUP, batch_size=2, lr=2e-3, seed=5, checkpoint_path=tmp_path / "own.pt",
            progress=False, device="cpu")

    vae = get_generator("vae")(**warmup_vae_config(own))
    vae.load_state_dict(initial)  # the same starting weights (the encoder and decoder have the same names)
    vae.fit(volumes, steps=WARMUP, batch_size=2, lr=2e-3, seed=5, checkpoint_path=tmp_path / "vae.pt",
            progress=False, device="cpu")
    started = _model(name, **extra)
    write_warmup_checkpoint(started, tmp_path / "vae.pt", tmp_path / "started.pt")

    a = torch.load(tmp_path / "own.pt", weights_only=True)
    b = torch.load(tmp_path / "started.pt", weights_only=True)
    assert a["step"] == b["step"] == WARMUP and a["config"] == b["config"]
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], rtol=1e-4, atol=1e-6)
    for opt in ("encoder", "decoder"):
        assert a["optimizers"][opt]["param_groups"][0]["lr"] == b["optimizers"][opt]["param_groups"][0]["lr"]
        for index, state in a["optimizers"][opt]["state"].items():
            other = b["optimizers"][opt]["state"][index]
            assert float(state["step"]) == float(other["step"]) == WARMUP
            torch.testing.assert_close(state["exp_avg"], other["exp_avg"], rtol=1e-3, atol=1e-7)
            torch.testing.assert_close(state["exp_avg_sq"], other["exp_avg_sq"], rtol=1e-3, atol=1e-9)
    assert set(a["history"]) == set(b["history"])
    for key in a["history"]:
        np.testing.assert_allclose(a["history"][key], b["history"][key], rtol=1e-4, atol=1e-6)
    # and the adversarial steps run from it
    history = started.fit(volumes, steps=WARMUP + 2, batch_size=2, lr=2e-3, seed=5,
                          checkpoint_path=tmp_path / "started.pt", progress=False, device="cpu")
    assert len(history["kl_fake"]) == WARMUP + 2 and history["kl_fake"][-1] > 0


def test_adam_moments_are_rescaled_to_the_models_loss_scale(tmp_path):
    """IntroVAE's warm-up loss is β × the VAE's (KL weight 1/β): the converted Adam moments are the VAE's times β
    (first moment) and β² (second), so that Adam's steps go on at the same size; the weights are the VAE's and the
    history is written in IntroVAE's terms (encoder loss = KL + β · L_AE)."""
    volumes = shell_pairs()
    model = _model("introvae")
    beta = model.config["beta"]
    vae = get_generator("vae")(**warmup_vae_config(model))
    assert vae.config["beta"] == 3e-3
    vae.fit(volumes, steps=WARMUP, batch_size=2, seed=0, checkpoint_path=tmp_path / "vae.pt", progress=False,
            device="cpu")
    write_warmup_checkpoint(model, tmp_path / "vae.pt", tmp_path / "introvae.pt")
    source = torch.load(tmp_path / "vae.pt", weights_only=True)
    converted = torch.load(tmp_path / "introvae.pt", weights_only=True)
    vae_moments = dict(zip([n for n, _ in vae.named_parameters()], source["optimizers"]["model"]["state"].values()))
    for key, module in (("encoder", model.encoder), ("decoder", model.decoder)):
        names = [f"{key}.{n}" for n, _ in module.named_parameters()]
        for index, name in enumerate(names):
            state = converted["optimizers"][key]["state"][index]
            torch.testing.assert_close(state["exp_avg"], vae_moments[name]["exp_avg"] * beta)
            torch.testing.assert_close(state["exp_avg_sq"], vae_moments[name]["exp_avg_sq"] * beta**2)
            torch.testing.assert_close(converted["state_dict"][name], source["state_dict"][name])
    rec, kl = np.array(source["history"]["reconstruction"]), np.array(source["history"]["kl"])
    np.testing.assert_allclose(converted["history"]["encoder"], kl + beta * rec, rtol=1e-6)
    np.testing.assert_allclose(converted["history"]["kl_real"], kl)
    assert converted["history"]["kl_fake"] == [0.0] * WARMUP


def test_a_vae_that_is_not_the_warm_up_is_refused_by_name(tmp_path):
    volumes = shell_pairs()
    model = _model("introvae")
    other = get_generator("vae")(**{**warmup_vae_config(model), "beta": 1e-2})
    other.fit(volumes, steps=WARMUP, batch_size=2, seed=0, checkpoint_path=tmp_path / "beta.pt", progress=False,
              device="cpu")
    with pytest.raises(ValueError, match=r"beta\.pt.*not introvae's warm-up.*beta"):
        write_warmup_checkpoint(model, tmp_path / "beta.pt", tmp_path / "out.pt")
    short = get_generator("vae")(**warmup_vae_config(model))
    short.fit(volumes, steps=WARMUP - 1, batch_size=2, seed=0, checkpoint_path=tmp_path / "short.pt",
              progress=False, device="cpu")
    with pytest.raises(ValueError, match=r"short\.pt.*stopped at step 2.*3 steps"):
        write_warmup_checkpoint(model, tmp_path / "short.pt", tmp_path / "out.pt")
    wgan = get_generator("wgan_gp")(resolution=16, latent_dim=8, base_channels=4, max_channels=16)
    wgan.fit(volumes, steps=1, batch_size=2, seed=0, checkpoint_path=tmp_path / "wgan.pt", progress=False,
             device="cpu")
    with pytest.raises(ValueError, match=r"wgan\.pt.*not of a VAE"):
        write_warmup_checkpoint(model, tmp_path / "wgan.pt", tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_warm_start_from_vae_reuses_the_vae_of_the_same_settings(tmp_path):
    """The VAE trained with the warm-up's settings (as notebook 04 trains it) is found and not trained again; the
    model's checkpoint then holds the warm-up and an existing checkpoint is left alone."""
    volumes = shell_pairs()
    model = _model("soft_introvae")
    vae = get_generator("vae")(**warmup_vae_config(model))
    vae_path = checkpoint_path(vae, volumes, WARMUP, 2, 2e-3, seed=0)
    vae.fit(volumes, steps=WARMUP, batch_size=2, lr=2e-3, seed=0, checkpoint_path=vae_path, progress=False,
            device="cpu")
    stamp = vae_path.stat().st_mtime_ns
    path = warm_start_from_vae(model, volumes, steps=WARMUP + 2, batch_size=2, lr=2e-3, seed=0, device="cpu",
                               progress=False)
    assert path == checkpoint_path(model, volumes, WARMUP + 2, 2, 2e-3, seed=0)
    assert vae_path.stat().st_mtime_ns == stamp, "the VAE was trained again"
    assert torch.load(path, weights_only=True)["step"] == WARMUP
    model.fit(volumes, steps=WARMUP + 2, batch_size=2, lr=2e-3, seed=0, checkpoint_path=path, progress=False,
              device="cpu")
    finished = path.stat().st_mtime_ns
    assert warm_start_from_vae(model, volumes, WARMUP + 2, 2, 2e-3, seed=0, device="cpu", progress=False) == path
    assert path.stat().st_mtime_ns == finished
