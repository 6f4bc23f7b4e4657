"""Tests of cranialkit.viz.slices: orientation of each view, overlays and legends, grids, projections, errors."""

from __future__ import annotations

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cranialkit.viz import slices  # noqa: E402
from cranialkit.volume import Volume  # noqa: E402


def _has_red(image: np.ndarray) -> bool:
    """Whether some pixels are clearly red (the implant's colour blended over grey and shaded)."""
    return bool(((image[..., 0] - image[..., 1] > 0.2) & (image[..., 0] - image[..., 2] > 0.2)).any())


def _images(fig: Figure) -> list[np.ndarray]:
    return [np.asarray(ax.get_images()[0].get_array()) for ax in fig.axes if ax.get_images()]


def _markers() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A block 'head' with three marker blobs: anterior (low j), superior (high k), patient's left (high i)."""
    shape = (30, 40, 20)
    head = np.zeros(shape, bool)
    head[5:25, 5:35, 3:17] = True
    marks = {name: np.zeros(shape, bool) for name in ("anterior", "superior", "left")}
    marks["anterior"][12:18, 5:9, 8:12] = True
    marks["superior"][12:18, 18:22, 13:17] = True
    marks["left"][21:25, 18:22, 8:12] = True
    return head, marks


def _colour_centre(image: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Mean (row, column) of the pixels closest to ``colour`` (fraction of the image size)."""
    distance = np.linalg.norm(image[..., :3] - colour, axis=-1)
    rows, cols = np.nonzero(distance < distance.min() + 0.05)
    return np.array([rows.mean() / image.shape[0], cols.mean() / image.shape[1]])


def test_views_are_oriented_with_the_head_up():
    head, marks = _markers()
    colors = {"anterior": "#ff0000", "superior": "#00ff00", "left": "#0000ff"}
    for name, mask in marks.items():
        fig = slices.show_slices(head, {name: mask}, focus=name, colors=colors)
        axial, coronal, sagittal = _images(fig)
        colour = np.array(to_rgb(colors[name]))
        if name == "anterior":
            assert _colour_centre(axial, colour)[0] < 0.35  # anterior at the top of the axial view
            assert _colour_centre(sagittal, colour)[1] < 0.35  # face on the left of the sagittal view
        if name == "superior":
            assert _colour_centre(coronal, colour)[0] < 0.35  # superior at the top
            assert _colour_centre(sagittal, colour)[0] < 0.35
        if name == "left":
            assert _colour_centre(axial, colour)[1] > 0.65  # radiological: patient's left on the right
            assert _colour_centre(coronal, colour)[1] > 0.65
        plt.close(fig)


def test_show_slices_overlays_legend_spacing_and_index():
    head, marks = _markers()
    volume = Volume(head, spacing=(1.0, 0.5, 2.0))
    fig = slices.show_slices(volume, {"defective skull": head & ~marks["superior"], "implant": marks["superior"]},
                             focus="implant", title="case")
    assert isinstance(fig, Figure) and len(_images(fig)) == 3
    legend_labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert legend_labels == ["defective skull", "implant"]
    axial = fig.axes[0].get_images()[0]
    assert axial.get_extent() == [0.0, 30.0, 0.0, 20.0]  # mm: 30 voxels × 1 mm wide, 40 × 0.5 mm tall
    assert "k = 14" in fig.axes[0].get_title()  # through the implant's centre of mass (k = 13..16)
    assert all(_has_red(img) for img in _images(fig))
    plt.close(fig)
    one = slices.show_slices(head.astype(float) * 100.0, axes="coronal", index=7)
    assert len(_images(one)) == 1 and "j = 7" in one.axes[0].get_title()
    assert _images(one)[0].std() > 0.1  # not blank
    plt.close(one)


def test_show_slices_errors():
    head, marks = _markers()
    with pytest.raises(ValueError, match="overlay 'implant' has shape"):
        slices.show_slices(head, {"implant": np.zeros((2, 2, 2), bool)})
    with pytest.raises(ValueError, match="focus"):
        slices.show_slices(head, {"implant": marks["left"]}, focus="prediction")
    with pytest.raises(ValueError, match="axes"):
        slices.show_slices(head, axes="oblique")
    with pytest.raises(ValueError, match="outside"):
        slices.show_slices(head, axes=2, index=99)
    with pytest.raises(ValueError, match="3D"):
        slices.show_slices(np.zeros((4, 4)))


def test_compare_grid_layouts():
    head, marks = _markers()
    rows = {name: {"defective skull": head & ~mask, "implant": mask} for name, mask in marks.items()}
    fig = slices.compare_grid(rows, title="classes")
    assert len(_images(fig)) == 9
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert titles[0] == "anterior — axial" and titles[-1] == "left — sagittal"
    plt.close(fig)
    fig = slices.compare_grid(rows, axes="axial", ncols=2)
    assert len(_images(fig)) == 3 and len(fig.axes) == 4  # a 2 × 2 grid, one panel hidden
    assert all(_has_red(img) for img in _images(fig))
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one case"):
        slices.compare_grid({})


def test_show_mip_surface_and_max(tmp_path):
    head, marks = _markers()
    fig = slices.show_mip(head & ~marks["superior"], {"implant": marks["superior"]}, title="head")
    images = _images(fig)
    assert len(images) == 3
    top = images[2]
    assert _has_red(top)  # the implant is seen from above
    assert not _has_red(images[0])  # hidden behind the forehead
    assert top[..., :3].std() > 0.05
    path = tmp_path / "mip.png"
    fig.savefig(path)
    assert path.stat().st_size > 10_000
    plt.close(fig)
    rng = np.random.default_rng(0)
    intensity = head * 1.0 + rng.normal(0, 0.1, head.shape)
    fig = slices.show_mip(intensity)
    assert "max projection" in fig.axes[0].get_title() and _images(fig)[0].std() > 0.1
    plt.close(fig)
    with pytest.raises(ValueError, match="mode"):
        slices.show_mip(head, mode="volume")


def test_show_slices_on_a_phantom_case_is_not_blank(tmp_path):
    from cranialkit.data.phantom import make_defect, make_skull

    skull = make_skull(0, (64, 64, 64))
    defective, implant = make_defect(skull, "bilateral", 0)
    fig = slices.show_slices(defective, {"defective skull": defective, "implant": implant}, focus="implant")
    for image in _images(fig):
        assert (image[..., :3].sum(axis=-1) > 0.3).mean() > 0.01  # bone and implant are drawn
    fig.savefig(tmp_path / "slices.png")
    plt.close(fig)
