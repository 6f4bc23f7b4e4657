"""`cranialkit generate` and generate_dataset: sampling a checkpoint into a dataset folder, in chunks, resumably."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import shell_pairs

from cranialkit.augment.generative import generate_dataset
from cranialkit.cli import main
from cranialkit.errors import OutputMismatchError
from cranialkit.generative import get_generator
from cranialkit.generative.sampling import latent_points
from cranialkit.io import read_mask


class _Shells(torch.nn.Module):
    """Replaces a decoder: latent point → a shell whose radius follows z[0], with a cap as implant (always valid)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        size = 16
        g = (torch.stack(torch.meshgrid(*[torch.arange(size)] * 3, indexing="ij")).float() + 0.5) / size - 0.5
        r = g.pow(2).sum(0).sqrt()
        out = []
        for radius in 0.36 + 0.03 * torch.tanh(z[:, 0]):
            skull = (r < radius) & (r > radius - 0.12)
            cap = skull & (g[2] > 0.25)
            out.append(torch.stack([skull & ~cap, cap]).float() * 20 - 10)
        return torch.stack(out)


@pytest.fixture()
def shell_vae(tmp_path):
    model = get_generator("vae")(resolution=16, latent_dim=4, base_channels=4, max_channels=8)
    model.decoder = _Shells()
    model.config["resolution"] = 16
    return model


def test_generate_dataset_is_chunk_independent_and_resumable(shell_vae, tmp_path):
    one = generate_dataset(shell_vae, 5, tmp_path / "a", sampler="uds", chunk=5, device="cpu", progress=False)
    two = generate_dataset(shell_vae, 5, tmp_path / "b", sampler="uds", chunk=2, device="cpu", progress=False)
    assert one["written"] == two["written"] == 5 and one["valid_fraction"] == 1.0
    for i in range(5):  # same cases whatever the chunking (arrays compared: pynrrd's header holds a timestamp)
        for folder in ("implant/vae", "defective_skull/vae"):
            a = read_mask(tmp_path / "a" / folder / f"{i:03d}.nrrd")
            b = read_mask(tmp_path / "b" / folder / f"{i:03d}.nrrd")
            np.testing.assert_array_equal(a.array, b.array)
            np.testing.assert_array_equal(a.spacing, b.spacing)
    again = generate_dataset(shell_vae, 5, tmp_path / "b", sampler="uds", chunk=2, device="cpu", progress=False)
    assert again["skipped"] == 5 and again["written"] == 0
    assert latent_points(5, (4,), "uds").shape == (5, 4)


def _tiny_checkpoint(tmp_path):
    return get_generator("vae")(resolution=16, latent_dim=4, base_channels=4, max_channels=8).save(tmp_path / "vae.pt")


def test_cli_generate_writes_a_dataset(tmp_path, capsys):
    ckpt = _tiny_checkpoint(tmp_path)  # untrained: whatever is valid gets written, the rest is counted
    code = main(["generate", "--model", "vae", "--checkpoint", str(ckpt), "--n", "3", "--sampler", "random",
                 "--out", str(tmp_path / "out"), "--device", "cpu", "--spacing-mm", "15"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["written"] + summary["invalid"] == 3 and summary["name"] == "vae"


def test_cli_generate_refuses_the_wrong_model(tmp_path, capsys):
    ckpt = _tiny_checkpoint(tmp_path)
    assert main(["generate", "--model", "wgan_gp", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")]) == 2
    assert "holds a 'vae' generator" in capsys.readouterr().err


def test_cli_train_generator_rejects_bad_config(tmp_path, capsys):
    assert main(["train-generator", "--model", "vae", "--checkpoint", str(tmp_path / "c.pt"), "--config", "{bad"]) == 2
    assert capsys.readouterr().err.startswith("error: --config: not valid JSON")


def test_generate_refuses_another_model_or_settings_in_its_folder(shell_vae, tmp_path):
    """Resuming into a folder that another checkpoint (or other sampling settings) filled would mix two models'
    samples; it is refused, naming the difference, unless the caller starts over."""
    out = tmp_path / "gen"
    generate_dataset(shell_vae, 3, out, sampler="uds", device="cpu", progress=False)
    other = get_generator("vae")(resolution=16, latent_dim=4, base_channels=4, max_channels=8)
    other.decoder = _Shells()
    other.config["resolution"] = 16
    with torch.no_grad():
        next(other.parameters()).add_(1.0)  # other weights, same settings
    with pytest.raises(OutputMismatchError, match=r"generator.weights: .* → "):
        generate_dataset(other, 3, out, sampler="uds", device="cpu", progress=False)
    with pytest.raises(OutputMismatchError, match=r"sampler: uds → random"):
        generate_dataset(shell_vae, 3, out, sampler="random", device="cpu", progress=False)
    again = generate_dataset(other, 3, out, sampler="uds", device="cpu", progress=False, overwrite=True)
    assert again["written"] == 3 and again["skipped"] == 0


def test_generator_checkpoint_refuses_other_data_or_lr(tmp_path):
    path = tmp_path / "vae.pt"
    model = get_generator("vae")(resolution=16, latent_dim=4, base_channels=4, max_channels=8)
    model.fit(shell_pairs(4, 16), steps=2, batch_size=2, lr=1e-3, device="cpu", checkpoint_path=path, progress=False)
    fresh = get_generator("vae")(resolution=16, latent_dim=4, base_channels=4, max_channels=8)
    with pytest.raises(OutputMismatchError, match=r"lr: 0.001 → 0.002"):
        fresh.fit(shell_pairs(4, 16), steps=2, batch_size=2, lr=2e-3, device="cpu", checkpoint_path=path,
                  progress=False)
    with pytest.raises(OutputMismatchError, match=r"data: \w+ → \w+"):
        fresh.fit(shell_pairs(4, 16, seed=1), steps=2, batch_size=2, lr=1e-3, device="cpu", checkpoint_path=path,
                  progress=False)
    history = fresh.fit(shell_pairs(4, 16), steps=3, batch_size=2, lr=1e-3, device="cpu", checkpoint_path=path,
                        progress=False)
    assert len(history["reconstruction"]) == 3  # same settings and data: resumed
