"""The generator interface: registry, training loop, checkpoints and resume, sampling, save/load, and the losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import shell_pairs

from cranialkit.generative import Generator, available_generators, get_generator, load_generator
from cranialkit.generative.blocks import ConvDecoder, ConvEncoder, num_levels
from cranialkit.generative.vae import kl_divergence, reconstruction_error
from cranialkit.generative.wgan_gp import gradient_penalty

MINE = ("vae", "wgan_gp", "introvae", "soft_introvae")
SMALL = {"resolution": 16, "latent_dim": 8, "base_channels": 4, "max_channels": 16}


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)


def _small(name: str, **extra) -> Generator:
    config = dict(SMALL, **extra)
    if name in ("introvae", "soft_introvae"):
        config.setdefault("warmup_steps", 1)  # reach the adversarial branch within the short tests
    return get_generator(name)(**config)


def test_registry_lists_my_generators():
    names = available_generators()
    assert set(MINE) <= set(names)
    assert get_generator("soft-introvae") is get_generator("soft_introvae")
    with pytest.raises(KeyError, match="available"):
        get_generator("no_such_model")


@pytest.mark.parametrize("name", MINE)
def test_each_generator_trains_samples_and_round_trips(name, tmp_path):
    torch.manual_seed(0)
    model = _small(name)
    history = model.fit(shell_pairs(), steps=3, batch_size=2, lr=1e-3, device="cpu", progress=False)
    assert history and all(len(v) == 3 and np.isfinite(v).all() for v in history.values())
    assert model.latent_shape == (8,)
    samples = model.sample(3, sampler="uds", batch_size=2, device="cpu")
    assert samples.shape == (3, 2, 16, 16, 16) and samples.dtype == np.float32
    assert samples.min() >= 0 and samples.max() <= 1
    latents = model.encode_batched(shell_pairs(3), device="cpu")
    if name == "wgan_gp":
        assert latents is None
    else:
        assert latents.shape == (3, 8)
    path = model.save(tmp_path / f"{name}.pt")
    loaded = load_generator(path, device="cpu")
    assert type(loaded) is type(model) and loaded.config == model.config
    np.testing.assert_allclose(loaded.sample(3, sampler="uds", batch_size=2, device="cpu"), samples, atol=1e-6)


@pytest.mark.parametrize("name", ["vae", "wgan_gp"])
def test_resume_gives_the_same_weights_as_one_run(name, tmp_path):
    data = shell_pairs()
    torch.manual_seed(0)
    straight = _small(name)
    straight.fit(data, steps=4, batch_size=2, device="cpu", progress=False, seed=3)

    ckpt = tmp_path / "run.pt"
    torch.manual_seed(0)
    first = _small(name)
    first.fit(data, steps=2, batch_size=2, device="cpu", progress=False, seed=3, checkpoint_path=ckpt)
    resumed = _small(name)  # a fresh process would start from new random weights
    history = resumed.fit(data, steps=4, batch_size=2, device="cpu", progress=False, seed=3, checkpoint_path=ckpt,
                          checkpoint_every=1)
    assert all(len(v) == 4 for v in history.values())
    for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=f"{name}: parameter {key} differs after resume")
    saved = torch.load(ckpt, weights_only=True)
    assert saved["step"] == 4 and set(saved["optimizers"]) == set(resumed.optim)
    assert isinstance(load_generator(ckpt, device="cpu"), type(straight))  # a training checkpoint loads too


def test_checkpoint_of_another_model_is_refused(tmp_path):
    ckpt = tmp_path / "vae.pt"
    _small("vae").fit(shell_pairs(), steps=1, batch_size=2, device="cpu", progress=False, checkpoint_path=ckpt)
    with pytest.raises(ValueError, match="checkpoint is for"):
        _small("vae", beta=0.5).fit(shell_pairs(), steps=2, device="cpu", progress=False, checkpoint_path=ckpt)


def test_checkpoint_path_depends_on_settings_and_training_data(tmp_path, monkeypatch):
    """Notebooks find a trained generator by name: other training data (e.g. more phantom subjects) or another
    setting must give another file, the same ones the same file."""
    from cranialkit.generative.recipes import checkpoint_path

    monkeypatch.setenv("CRANIALKIT_DATA_DIR", str(tmp_path))
    model, data = _small("vae"), shell_pairs()
    path = checkpoint_path(model, data, 100, 8, 1e-3)
    assert path.parent == tmp_path / "generators" and path.name.startswith("vae_r16_s100_")
    assert checkpoint_path(model, data.copy(), 100, 8, 1e-3) == path
    assert checkpoint_path(model, shell_pairs(seed=1), 100, 8, 1e-3) != path  # other cases
    assert checkpoint_path(model, data[:4], 100, 8, 1e-3) != path  # fewer cases
    assert checkpoint_path(model, data, 100, 8, 2e-3) != path
    assert checkpoint_path(_small("vae", beta=0.5), data, 100, 8, 1e-3) != path


def test_fit_rejects_badshell_pairs():
    model = _small("vae")
    with pytest.raises(ValueError, match=r"\(N, 2, S, S, S\)"):
        model.fit(np.zeros((2, 1, 16, 16, 16)), steps=1, progress=False)
    with pytest.raises(ValueError, match="resolution 8"):
        model.fit(np.zeros((2, 2, 8, 8, 8)), steps=1, progress=False)
    bad = shell_pairs()
    bad[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.fit(shell_pairs() * 2, steps=1, progress=False)


def test_load_generator_errors(tmp_path):
    with pytest.raises(ValueError, match=r"missing.pt: no such checkpoint file"):
        load_generator(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk.pt: not a checkpoint \(not a file written by torch.save\)"):
        load_generator(junk)


def test_weights_of_an_older_network_are_refused_with_the_file_name(tmp_path):
    """A checkpoint whose layers no longer fit (e.g. written before the decoder's output layer changed)."""
    model = _small("vae")
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.features")}
    state["decoder.features.5.conv.weight"] = torch.zeros(2, 4, 3, 3, 3)  # the old transposed-convolution output
    old = tmp_path / "old_vae.pt"
    torch.save({"name": "vae", "config": model.config, "state_dict": state}, old)
    with pytest.raises(ValueError, match=r"old_vae\.pt: the saved weights do not fit.*train again"):
        load_generator(old)


def test_decoder_output_has_no_checkerboard():
    """Neighbouring output voxels differ less than voxels two apart (a stride-2 transposed convolution at the output
    gives the opposite, > 2×: the checkerboard that adversarial training exploited)."""
    torch.manual_seed(0)
    decoder = ConvDecoder(32, 16, base_channels=8)
    with torch.no_grad():
        logits = decoder(torch.randn(4, 16))
    for axis in (2, 3, 4):
        step_1 = (logits.narrow(axis, 1, 31) - logits.narrow(axis, 0, 31)).abs().mean()
        step_2 = (logits.narrow(axis, 2, 30) - logits.narrow(axis, 0, 30)).abs().mean()
        assert step_1 < step_2, axis


def test_blocks_shapes_and_resolution_check():
    assert num_levels(32) == 3 and num_levels(128) == 5
    with pytest.raises(ValueError, match="4·2\\^k"):
        num_levels(48)
    enc, dec = ConvEncoder(32, 5, base_channels=4), ConvDecoder(32, 7, base_channels=4)
    assert enc(torch.zeros(2, 2, 32, 32, 32)).shape == (2, 5)
    assert dec(torch.zeros(2, 7)).shape == (2, 2, 32, 32, 32)


def test_kl_divergence_matches_closed_form():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    logvar = torch.tensor([[0.0, 0.0], [float(np.log(4.0)), 0.0]])
    expected = [0.0, 0.5 * ((1 + 4 - 1 - np.log(4.0)) + (4 + 1 - 1 - 0))]
    torch.testing.assert_close(kl_divergence(mu, logvar), torch.tensor(expected, dtype=torch.float32))


def test_reconstruction_error_is_low_for_a_match():
    target = torch.as_tensor(shell_pairs(2))
    good = reconstruction_error((target * 2 - 1) * 12, target)
    bad = reconstruction_error(-(target * 2 - 1) * 12, target)
    assert good.shape == (2,) and (good < 0.05).all() and (bad > 1.0).all()


def test_gradient_penalty_of_a_linear_critic():
    """C(x) = w·x has gradient w everywhere: the penalty is (‖w‖ − 1)²."""
    w = torch.full((1, 2, 4, 4, 4), 0.25)
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.rand(3, 2, 4, 4, 4), torch.rand(3, 2, 4, 4, 4)
    expected = (w.norm() - 1.0) ** 2
    torch.testing.assert_close(gradient_penalty(critic, real, fake), expected)


def test_wgan_skull_and_region_output_builds_a_disjoint_pair():
    torch.manual_seed(0)
    model = _small("wgan_gp", output="skull_and_region")
    z = torch.randn(3, 8)
    skull_region = torch.sigmoid(model.generator(z))
    pair = model.decode(z)
    skull, region = skull_region[:, 0], skull_region[:, 1]
    torch.testing.assert_close(pair[:, 0], skull * (1 - region))
    torch.testing.assert_close(pair[:, 1], skull * region)
    # the two channels add up to the complete skull, so a voxel is never more defective skull AND implant than bone
    torch.testing.assert_close(pair.sum(1), skull)
    # the prior biases start with thin bone and a half-open region: implant ≈ half of the skull channel on average
    ratio = float(pair[:, 1].mean() / skull.mean())
    assert 0.3 < ratio < 0.7
    with pytest.raises(ValueError, match="unknown output"):
        _small("wgan_gp", output="complete")


def test_cap_region_is_the_cone_it_describes():
    """A voxel is inside the cap region (r > 0.5) exactly when it lies within the half-angle of the axis as seen
    from the apex; the edge is soft (r ≈ 0.5 on the cone's surface) and gradients reach the cone's parameters."""
    from cranialkit.generative.blocks import CapRegion

    torch.manual_seed(0)
    cap = CapRegion(resolution=16, latent_dim=8)
    z = torch.randn(2, 8)
    r = torch.sigmoid(cap(z))[:, 0]
    apex, axis, half_angle = cap.parameters_from(z)
    assert r.shape == (2, 16, 16, 16)
    assert torch.all((half_angle > np.radians(10)) & (half_angle < np.radians(80)))
    torch.testing.assert_close(axis.norm(dim=1), torch.ones(2))
    q = cap.grid.unsqueeze(0) - apex[:, :, None, None, None]
    cos = (q * axis[:, :, None, None, None]).sum(1) / q.norm(dim=1)
    angle = torch.arccos(cos.clamp(-1, 1))
    margin = 2.0 / q.norm(dim=1).clamp(min=1e-6)  # > 2 voxels of arc from the surface: clearly in or out
    inside, outside = angle < half_angle[:, None, None, None] - margin, angle > half_angle[:, None, None, None] + margin
    assert inside.any() and outside.any()
    assert torch.all(r[inside] > 0.8) and torch.all(r[outside] < 0.2)
    # it starts pointing up (array axis 2 = superior): the top of the grid is inside, the bottom outside
    assert torch.all(axis[:, 2] > 0.9)
    assert torch.all(r[:, 8, 8, -1] > 0.5) and torch.all(r[:, 8, 8, 0] < 0.5)
    r.sum().backward()
    assert cap.head[-1].weight.grad.abs().sum() > 0


def test_wgan_skull_and_cap_output_cuts_the_skull_with_the_cone():
    torch.manual_seed(0)
    model = _small("wgan_gp", output="skull_and_cap")
    z = torch.randn(3, 8)
    skull, region = torch.sigmoid(model.generator(z)), torch.sigmoid(model.cap(z))
    assert skull.shape == (3, 1, 16, 16, 16)
    pair = model.decode(z)
    torch.testing.assert_close(pair, torch.cat([skull * (1 - region), skull * region], dim=1))
    # the cone covers the top of the head only: far less than half of the grid
    assert 0.0 < float((region > 0.5).float().mean()) < 0.3


@pytest.mark.parametrize("name", ["vae", "introvae", "soft_introvae"])
def test_vae_family_skull_and_cap_decoder_gives_the_cut_skull_as_logits(name):
    """With ``output = "skull_and_cap"`` the decoder's logits are those of (c·(1 − r), c·r): finite, and their
    sigmoid is the skull cut by the cone; the losses train through them (one step changes the cone's head)."""
    torch.manual_seed(0)
    model = _small(name, output="skull_and_cap")
    z = torch.randn(3, 8)
    skull, region = torch.sigmoid(model.decoder.skull(z)), torch.sigmoid(model.decoder.cap(z))
    logits = model.decoder(z)
    assert logits.shape == (3, 2, 16, 16, 16) and torch.isfinite(logits).all()
    torch.testing.assert_close(torch.sigmoid(logits), torch.cat([skull * (1 - region), skull * region], 1),
                               atol=1e-5, rtol=1e-4)
    model.optim = model.optimizers(1e-3)
    before = model.decoder.cap.head[-1].weight.clone()
    model.training_step(torch.from_numpy(shell_pairs(4)), 5)
    assert not torch.equal(before, model.decoder.cap.head[-1].weight)
    with pytest.raises(ValueError, match="unknown output"):
        _small(name, output="skull_and_region")


def test_wgan_pair_output_is_the_plain_sigmoid():
    torch.manual_seed(0)
    model = _small("wgan_gp")
    z = torch.randn(2, 8)
    torch.testing.assert_close(model.decode(z), torch.sigmoid(model.generator(z)))


@pytest.mark.parametrize("name", ["introvae", "soft_introvae"])
def test_warmup_step_is_one_vae_step(name):
    """During warm-up IntroVAE and Soft-IntroVAE are a VAE with the same KL weight relative to the reconstruction:
    one step changes the weights exactly as the VAE's step does (one backward pass, both networks updated)."""
    torch.manual_seed(0)
    model = _small(name, warmup_steps=5)
    # IntroVAE's warm-up loss is KL + β·L_AE, i.e. β times a VAE loss with KL weight 1/β: with plain SGD (update =
    # lr · gradient, unlike Adam's, proportional to the loss scale) the VAE needs β times the learning rate.
    kl_weight, loss_scale = ((model.config["beta_kl"], 1.0) if name == "soft_introvae"
                             else (1.0 / model.config["beta"], model.config["beta"]))
    vae = _small("vae", beta=kl_weight)
    vae.load_state_dict(model.state_dict())
    model.optim = {"encoder": torch.optim.SGD(model.encoder.parameters(), lr=0.1),
                   "decoder": torch.optim.SGD(model.decoder.parameters(), lr=0.1)}
    vae.optim = {"model": torch.optim.SGD(vae.parameters(), lr=0.1 * loss_scale)}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.from_numpy(shell_pairs(4))
    torch.manual_seed(1)
    warmup_terms = model.training_step(x, 0)
    torch.manual_seed(1)
    vae.training_step(x, 0)
    after = model.state_dict()
    for key, value in vae.state_dict().items():
        assert torch.allclose(after[key], value, rtol=1e-4, atol=1e-6), key
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("encoder.") for k in changed) and any(k.startswith("decoder.") for k in changed)
    assert set(warmup_terms) == set(model.training_step(x, 5)), "warm-up and adversarial steps log the same terms"


def test_soft_introvae_adversarial_phase_scales_the_learning_rate_once(tmp_path):
    """The warm-up trains at ``lr``; the adversarial steps at ``lr · adversarial_lr_scale`` — also after a resume."""
    ckpt = tmp_path / "soft.pt"
    args = dict(batch_size=2, lr=1e-3, device="cpu", progress=False, checkpoint_path=ckpt, checkpoint_every=1)
    model = _small("soft_introvae", warmup_steps=2, adversarial_lr_scale=0.1)
    model.fit(shell_pairs(), steps=2, **args)
    assert {g["lr"] for opt in model.optim.values() for g in opt.param_groups} == {1e-3}
    model.fit(shell_pairs(), steps=3, **args)
    resumed = _small("soft_introvae", warmup_steps=2, adversarial_lr_scale=0.1)
    resumed.fit(shell_pairs(), steps=5, **args)
    for trained in (model, resumed):
        assert [g["lr"] for opt in trained.optim.values() for g in opt.param_groups] == pytest.approx([1e-4, 1e-4])


def test_wgan_region_smoothing_makes_the_region_coarse():
    """With ``region_smoothing = 4`` the defect region is smooth on a 4× coarser grid: implant / skull, the region,
    varies little between neighbouring voxels; a smoothing that does not divide the grid is refused."""
    torch.manual_seed(0)
    model = get_generator("wgan_gp")(**SMALL, output="skull_and_region", region_smoothing=4)
    z = torch.randn(2, SMALL["latent_dim"])
    with torch.no_grad():
        logits, pair = model.generator(z), model.decode(z)
    assert pair.shape == (2, 2, 16, 16, 16)
    region = pair[:, 1] / (pair[:, 0] + pair[:, 1])
    raw_region = torch.sigmoid(logits[:, 1])
    jump = (region[..., 1:] - region[..., :-1]).abs().mean()
    raw_jump = (raw_region[..., 1:] - raw_region[..., :-1]).abs().mean()
    assert jump < 0.5 * raw_jump
    with pytest.raises(ValueError, match="region_smoothing"):
        get_generator("wgan_gp")(**SMALL, region_smoothing=3)


def test_implant_directions_point_from_the_centre_to_the_implant():
    """Caps on top of a shell point up (array axis 2); a cap moved to one side points there; a pair without an
    implant has no direction (NaN row)."""
    from cranialkit.generative.data import implant_directions

    volumes = shell_pairs(3)
    volumes[1, 1] = np.rot90(volumes[1, 1], k=1, axes=(2, 0))  # the cap rotated from the top towards axis 0
    volumes[2, 1] = 0
    directions = implant_directions(volumes)
    assert directions.shape == (3, 3)
    np.testing.assert_allclose(np.linalg.norm(directions[:2], axis=1), 1.0, atol=1e-9)
    assert directions[0, 2] > 0.99
    assert abs(directions[1, 0]) > 0.99 and abs(directions[1, 2]) < 0.1
    assert np.isnan(directions[2]).all()
    with pytest.raises(ValueError, match="pairs"):
        implant_directions(volumes[:, :1])


@pytest.mark.parametrize("name", ["vae", "wgan_gp"])
def test_sampled_defect_cones_are_the_cones_of_the_decoded_samples(name):
    """The cones are read for the same latent points that ``sample`` decodes: the implant of each sample lies
    inside its cone (r > 0.5 wherever the implant channel dominates). Models without a cone give None."""
    from cranialkit.generative.blocks import CapRegion
    from cranialkit.generative.sampling import sampled_defect_cones

    torch.manual_seed(0)
    model = _small(name, output="skull_and_cap")
    cones = sampled_defect_cones(model, 5, "uds")
    assert cones["apex"].shape == (5, 3) and cones["axis"].shape == (5, 3) and cones["half_angle_deg"].shape == (5,)
    assert np.all((cones["half_angle_deg"] >= 10) & (cones["half_angle_deg"] <= 80))
    np.testing.assert_allclose(np.linalg.norm(cones["axis"], axis=1), 1.0, atol=1e-5)
    samples = model.sample(5, sampler="uds")
    cap = next(m for m in model.modules() if isinstance(m, CapRegion))
    grid = cap.grid.numpy()
    for i in range(5):
        q = grid - cones["apex"][i][:, None, None, None]
        cos = np.einsum("c...,c->...", q, cones["axis"][i]) / np.linalg.norm(q, axis=0).clip(min=1e-6)
        inside = np.degrees(np.arccos(np.clip(cos, -1, 1))) < cones["half_angle_deg"][i]
        implant_side = samples[i, 1] > samples[i, 0]
        assert implant_side.any()
        assert inside[implant_side].mean() > 0.95
    assert sampled_defect_cones(_small(name), 3) is None
