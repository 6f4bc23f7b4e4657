"""One checkpoint convention: names from settings and data, found again by later notebooks, never mixed up."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import shell_pairs

from cranialkit.checkpoints import (
    checkpoint_name,
    checkpoint_path,
    data_fingerprint,
    find_checkpoints,
    generated_folder,
)
from cranialkit.generative.recipes import (
    RECIPES,
    SMOKE,
    autoencoder_checkpoint_path,
    recipe,
    recipe_model,
    saved_model_path,
    train_or_load,
)


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CRANIALKIT_DATA_DIR", str(tmp_path))
    return tmp_path


def test_name_holds_resolution_steps_and_a_digest_of_settings_and_data():
    name = checkpoint_name("vae", {"beta": 3e-3, "lr": 2e-3}, 32, 2000, data="abc")
    assert name.startswith("vae_r32_s2000_") and len(name.rsplit("_", 1)[1]) == 10
    assert checkpoint_name("vae", {"lr": 2e-3, "beta": 3e-3}, 32, 2000, data="abc") == name  # key order is no setting
    assert checkpoint_name("vae", {"beta": 3e-3, "lr": 1e-3}, 32, 2000, data="abc") != name
    assert checkpoint_name("vae", {"beta": 3e-3, "lr": 2e-3}, 32, 2000, data="abd") != name
    with pytest.raises(ValueError, match="plain word"):
        checkpoint_name("runs/vae", {}, 32, 1)


def test_data_fingerprint_sees_shape_and_set_voxels():
    pairs = shell_pairs()
    assert data_fingerprint(pairs) == data_fingerprint(pairs.copy())
    assert data_fingerprint(pairs) != data_fingerprint(pairs[:4])
    changed = pairs.copy()
    changed[0, 1, 0, 0, 0] = 1.0
    assert data_fingerprint(pairs) != data_fingerprint(changed)
    assert data_fingerprint(pairs[:, 0], pairs[:, 1]) != data_fingerprint(pairs[:, 1], pairs[:, 0])


def test_kinds_are_a_file_for_generators_and_a_run_folder_for_networks(data_dir):
    generator = checkpoint_path("generator", "vae", {"a": 1}, 32, 10, "x")
    run = checkpoint_path("reconstruction", "unet", {"a": 1}, 64, 6000, "x")
    assert generator.parent == data_dir / "generators" and generator.suffix == ".pt"
    assert run.parent == data_dir / "runs" and run.suffix == ""
    with pytest.raises(ValueError, match="kind"):
        checkpoint_path("other", "vae", {}, 32, 1)
    assert generated_folder(generator) == data_dir / "generated" / generator.stem


def test_find_checkpoints_lists_only_the_named_model_oldest_first(data_dir):
    folder = data_dir / "generators"
    folder.mkdir()
    older, newer = folder / "vae_r32_s10_aaaaaaaaaa.pt", folder / "vae_r32_s20_bbbbbbbbbb.pt"
    for path in (older, newer, folder / "vae_r16_s10_cccccccccc.pt", folder / "soft_introvae_r32_s10_dddddddddd.pt",
                 folder / "vae_autoencoder_r32_s10_eeeeeeeeee.pt"):
        path.write_bytes(b"x")
    os.utime(older, (1, 1))
    assert find_checkpoints("generator", "vae", resolution=32) == [older, newer]
    assert len(find_checkpoints("generator", "vae")) == 3
    run = data_dir / "runs" / "unet_r64_s6000_ffffffffff"
    run.mkdir(parents=True)
    assert find_checkpoints("reconstruction", "unet") == []  # no best.pt yet: not a finished run
    (run / "best.pt").write_bytes(b"x")
    assert find_checkpoints("reconstruction", "unet", resolution=64) == [run / "best.pt"]


def test_smoke_recipe_keeps_the_model_and_shrinks_every_stage():
    for name in RECIPES:
        full, small = recipe(name), recipe(name, smoke=True)
        assert small["steps"] == SMOKE["steps"] and small["batch_size"] == SMOKE["batch_size"]
        for key, value in full["config"].items():
            expected = SMOKE[key] if key in ("warmup_steps", "autoencoder_steps") else value
            assert small["config"][key] == expected, (name, key)
    assert recipe("vae")["steps"] == 2000, "recipe() must hand out copies"


def test_train_or_load_trains_once_and_finds_the_model_again(data_dir):
    volumes = shell_pairs(n=4)
    path = saved_model_path("vae", volumes, smoke=True)
    assert not path.exists()
    model, history = train_or_load("vae", volumes, smoke=True, device="cpu", progress=False)
    assert path.exists() and len(history["loss"]) == SMOKE["steps"]
    stamp = path.stat().st_mtime_ns
    again, _ = train_or_load("vae", volumes, smoke=True, device="cpu", progress=False)
    assert path.stat().st_mtime_ns == stamp, "a finished model was trained again"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value)
    assert saved_model_path("vae", volumes, steps=5, smoke=True) != path
    assert saved_model_path("vae", shell_pairs(n=4, seed=1), smoke=True) != path


def test_latent_diffusion_trains_its_autoencoder_under_its_own_name(data_dir):
    volumes = shell_pairs(n=4)
    model, training = recipe_model("ldm_vqvae", volumes, smoke=True)
    ae_path = autoencoder_checkpoint_path(model, volumes, training["batch_size"])
    assert ae_path.name.startswith(f"{model.autoencoder.name}_r16_s{SMOKE['autoencoder_steps']}_")
    trained, history = train_or_load("ldm_vqvae", volumes, smoke=True, device="cpu", progress=False)
    assert ae_path.exists() and saved_model_path("ldm_vqvae", volumes, smoke=True).exists()
    assert torch.load(ae_path, weights_only=True)["step"] == SMOKE["autoencoder_steps"]
    assert float(trained.latent_scale) > 0 and len(history["mse"]) == SMOKE["steps"]
    other_denoiser, _ = recipe_model("ldm_vqvae", volumes, smoke=True, steps=8)
    assert autoencoder_checkpoint_path(other_denoiser, volumes, training["batch_size"]) == ae_path


def test_unknown_recipe_says_which_exist():
    with pytest.raises(KeyError, match="recipes exist for"):
        recipe("gan")
    assert np.isclose(recipe("introvae")["config"]["beta"] * recipe("vae")["config"]["beta"], 1.0)


def test_recipe_pairs_are_the_subjects_each_recipe_trains_on(data_dir):
    from cranialkit.generative.recipes import SERIES_SUBJECTS, recipe_pairs

    assert recipe("vae")["n_subjects"] == SERIES_SUBJECTS == 10
    assert recipe("ldm_vqvae")["n_subjects"] == recipe("ldm_vae")["n_subjects"] == 20
    assert {recipe(name, smoke=True)["n_subjects"] for name in RECIPES} == {SMOKE["n_subjects"]}
    pairs = recipe_pairs("ldm_vqvae", resolution=16, smoke=True)
    assert pairs.volumes.shape == (SMOKE["n_subjects"] * 6, 2, 16, 16, 16)
    np.testing.assert_array_equal(pairs.volumes, recipe_pairs("vae", resolution=16, smoke=True).volumes)
