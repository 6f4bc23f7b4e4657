"""Tests of cranialkit.viz.widgets: the pure slice figure, and viewers that build and update without a browser."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from cranialkit.data.phantom import make_defect, make_skull
from cranialkit.viz.widgets import RenderViewer, SliceViewer, slice_view


@pytest.fixture(scope="module")
def cases() -> dict[str, dict[str, np.ndarray]]:
    """Two phantom cases on different grids (48³ and 40³), with a (deliberately shifted) prediction on one."""
    big = make_skull(0, shape=(48, 48, 48))
    small = make_skull(1, shape=(40, 40, 40))
    defective_a, implant_a = make_defect(big, "bilateral", seed=0)
    defective_b, implant_b = make_defect(small, "skullfix", seed=1)
    prediction_b = np.roll(implant_b.array, 1, axis=2)
    return {
        "A / truth": {"defective": defective_a, "implant": implant_a},
        "B / U-Net": {"defective": defective_b, "implant": implant_b, "prediction": prediction_b},
    }


def _pixels(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3]


def test_slice_view_draws_requested_slices(cases):
    case = cases["B / U-Net"]
    fig = slice_view(case, index=(20, 21, 30))
    try:
        assert [ax.get_title() for ax in fig.axes] == ["axial (k = 30)", "coronal (j = 21)", "sagittal (i = 20)"]
        assert _pixels(fig).std() > 20  # not blank
    finally:
        plt.close(fig)
    single = slice_view(case, axis="axial", index=12, overlays=["implant"])
    try:
        assert len(single.axes) == 1 and single.axes[0].get_title() == "axial (k = 12)"
        legend_labels = [t.get_text() for t in single.legends[0].get_texts()]
        assert legend_labels == ["implant"]
    finally:
        plt.close(single)


def test_slice_view_errors_name_the_mask(cases):
    with pytest.raises(ValueError, match="'nope'"):
        slice_view(cases["A / truth"], overlays=["nope"])
    with pytest.raises(ValueError, match="base"):
        slice_view(cases["A / truth"], base="complete")
    with pytest.raises(ValueError, match="at least one"):
        slice_view({})


def test_slice_viewer_builds_and_follows_its_controls(cases):
    viewer = SliceViewer(cases)
    n_open = len(plt.get_fignums())
    # starts on the first case, sliders sized to its grid and centred on its implant
    assert viewer.case.value == "A / truth"
    assert [s.max for s in viewer.sliders] == [47, 47, 47]
    implant = cases["A / truth"]["implant"].array
    centre = np.argwhere(implant).mean(axis=0)
    assert np.allclose([s.value for s in viewer.sliders], centre, atol=1)
    assert viewer.figure._suptitle.get_text() == "A / truth"

    viewer.sliders[2].value = 10
    assert viewer.figure.axes[0].get_title() == "axial (k = 10)"

    viewer.case.value = "B / U-Net"  # another grid: sliders follow
    assert [s.max for s in viewer.sliders] == [39, 39, 39]
    assert all(0 <= s.value <= 39 for s in viewer.sliders)
    assert viewer.figure._suptitle.get_text() == "B / U-Net"
    labels = [t.get_text() for t in viewer.figure.legends[0].get_texts()]
    assert labels == ["implant", "prediction"]

    viewer.toggles["prediction"].value = False
    labels = [t.get_text() for t in viewer.figure.legends[0].get_texts()]
    assert labels == ["implant"]
    assert len(plt.get_fignums()) <= n_open  # updates do not pile up open pyplot figures
    assert viewer.widget.children[0] is viewer.case


def test_slice_viewer_rejects_bad_cases():
    with pytest.raises(ValueError, match="at least one case"):
        SliceViewer({})
    with pytest.raises(ValueError, match="share one grid"):
        SliceViewer({"x": {"a": np.zeros((4, 4, 4), bool), "b": np.zeros((5, 4, 4), bool)}})


def test_render_viewer_renders_caches_and_switches(cases):
    small = {label: {"defective": case["defective"], "true_implant": case["implant"]} for label, case in cases.items()}
    viewer = RenderViewer(small, window_size=(120, 120), legend=False)
    first = viewer.image
    assert first.shape == (120, 120, 3) and first.std() > 10
    viewer.camera.value = "top"
    assert viewer.image.shape == (120, 120, 3) and np.abs(viewer.image.astype(int) - first).mean() > 1
    viewer.camera.value = "auto"
    assert viewer.image is first  # from the cache, not rendered again
    assert len(viewer._cache) == 2
    with pytest.raises(ValueError, match="unknown keys"):
        RenderViewer({"x": {"skull": cases["A / truth"]["defective"]}})
