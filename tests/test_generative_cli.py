"""`cranialkit generate` and generate_dataset: sampling a checkpoint into a dataset folder, in chunks, resumably."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cranialkit.augment.generative import generate_dataset
from cranialkit.cli import main
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


def test_cli_generate_refuses_the_wrong_model(tmp_path):
    ckpt = _tiny_checkpoint(tmp_path)
    with pytest.raises(SystemExit, match="holds a 'vae' generator"):
        main(["generate", "--model", "wgan_gp", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")])


def test_cli_train_generator_rejects_bad_config(tmp_path):
    with pytest.raises(SystemExit, match="--config"):
        main(["train-generator", "--model", "vae", "--checkpoint", str(tmp_path / "c.pt"), "--config", "{bad"])
