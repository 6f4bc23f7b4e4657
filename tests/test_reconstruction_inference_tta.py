"""Test-time mirror averaging in ``predict_implants`` / ``Reconstructor`` and the "compact" network size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cranialkit.reconstruction.inference import predict_implants
from cranialkit.reconstruction.network import MODEL_SIZES, build_network


class ShiftNet(torch.nn.Module):
    """Logits = +4 on the voxel after each input voxel along axis 0 (D), −4 elsewhere: not mirror-symmetric."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = torch.roll(x, 1, dims=2)
        shifted[:, :, 0] = 0
        return 8 * shifted - 4


def test_flip_averaging_keeps_only_what_both_views_predict_above_threshold():
    defective = np.zeros((1, 8, 4, 4), bool)
    defective[0, 3, 1, 1] = True
    plain = predict_implants(ShiftNet(), defective, amp=False)
    assert plain[0, 4, 1, 1] and plain.sum() == 1  # the voxel after
    # mirrored: the mirrored net predicts the voxel *before*; each view gives p ≈ 0.98 to its voxel and ≈ 0.02 to
    # the other's, so their mean is ≈ 0.5 for both: above 0.45 both survive, above 0.55 neither
    low = predict_implants(ShiftNet(), defective, amp=False, threshold=0.45, flip_axes=(0,))
    high = predict_implants(ShiftNet(), defective, amp=False, threshold=0.55, flip_axes=(0,))
    assert low[0, 4, 1, 1] and low[0, 2, 1, 1] and low.sum() == 2
    assert high.sum() == 0
    # flipping along an axis where the net is symmetric changes nothing
    np.testing.assert_array_equal(predict_implants(ShiftNet(), defective, amp=False, flip_axes=(2,)), plain)


def test_flip_axes_must_be_volume_axes():
    with pytest.raises(ValueError, match="flip_axes"):
        predict_implants(ShiftNet(), np.zeros((1, 4, 4, 4), bool), flip_axes=(3,))


def test_compact_network_has_five_levels_and_keeps_the_grid():
    net = build_network("compact")
    assert MODEL_SIZES["compact"]["channels"] == (8, 16, 32, 64, 128)
    n_params = sum(p.numel() for p in net.parameters())
    assert 0.5e6 < n_params < 0.7e6
    with torch.no_grad():
        out = net(torch.zeros(1, 1, 32, 32, 32))
    assert out.shape == (1, 1, 32, 32, 32)
