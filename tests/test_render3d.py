"""Tests of cranialkit.viz.render3d: meshes in mm (geometry, orientation, no shrinking) and non-blank renders."""

from __future__ import annotations

import importlib.util

import imageio.v3 as iio
import numpy as np
import pytest
import pyvista as pv
from matplotlib.figure import Figure

from cranialkit.viz import render3d
from cranialkit.viz.render3d import (
    ERROR_BAR_SHORT_TITLE,
    ERROR_BAR_TITLE,
    implant_distance_mesh,
    is_watertight,
    mask_to_mesh,
    render_error_map,
    render_reconstruction,
    render_side_by_side,
    show_image,
    signed_volume,
    turntable,
)
from cranialkit.volume import Volume

SPACING = (3.0, 3.0, 3.0)
SIZE = (220, 220)


@pytest.fixture(scope="module")
def shell_case() -> dict[str, np.ndarray]:
    """An egg-shaped vault (36³) with a hole on the patient's left (+x, high axis-0 index) near the top."""
    x, y, z = np.mgrid[-18:18, -18:18, -18:18].astype(float)
    radius = np.sqrt((x / 1.0) ** 2 + (y / 1.15) ** 2 + z**2)
    shell = (radius < 15.5) & (radius > 12.5) & (z > -6)
    hole = (x > 4) & (z > 0) & (np.abs(y) < 7)
    return {"complete": shell, "defective": shell & ~hole, "implant": shell & hole}


def _reddish(image: np.ndarray) -> np.ndarray:
    """Pixels of the predicted implant's orange-red, whatever their shading."""
    r, g, b = (image[..., c].astype(int) for c in range(3))
    return (r > g + 50) & (r > b + 60)


def _background(image: np.ndarray) -> np.ndarray:
    return np.all(image == image[0, 0], axis=-1)


# ------------------------------------------------------------------------------------------------------------------
# meshes
# ------------------------------------------------------------------------------------------------------------------
def test_cube_mesh_bounds_in_mm_with_spacing_and_origin():
    mask = np.zeros((10, 12, 14), bool)
    mask[2:5, 3:9, 4:6] = True  # voxels 2..4, 3..8, 4..5
    spacing, origin = np.array([0.5, 2.0, 3.0]), np.array([10.0, -20.0, 5.0])
    mesh = mask_to_mesh(mask, spacing, origin, smooth_iterations=0, upsample=3)
    # marching cubes at 0.5 puts the surface on the voxel faces: index - 0.5 .. index + 0.5
    low = origin + spacing * (np.array([2, 3, 4]) - 0.5)
    high = origin + spacing * (np.array([4, 8, 5]) + 0.5)
    bounds = np.asarray(mesh.bounds).reshape(3, 2)
    np.testing.assert_allclose(bounds[:, 0], low, atol=1e-6)
    np.testing.assert_allclose(bounds[:, 1], high, atol=1e-6)
    assert is_watertight(mesh)
    assert signed_volume(mesh) > 0


def test_oblique_direction_maps_vertices_into_world():
    mask = np.zeros((12, 12, 12), bool)
    mask[3:9, 4:7, 5:10] = True
    angle = np.deg2rad(30)
    direction = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    volume = Volume(mask, (0.8, 0.8, 1.2), (5.0, 6.0, 7.0), direction)
    mesh = mask_to_mesh(volume, smooth_iterations=0)
    # map the vertices back to voxel indices: they lie on the faces of the voxel box, inside [low-0.5, high+0.5]
    index = ((np.asarray(mesh.points) - volume.origin) @ direction) / volume.spacing
    assert index.min(axis=0) == pytest.approx([2.5, 3.5, 4.5], abs=1e-6)
    assert index.max(axis=0) == pytest.approx([8.5, 6.5, 9.5], abs=1e-6)


def test_mirrored_direction_still_faces_outward():
    mask = np.zeros((8, 8, 8), bool)
    mask[2:6, 2:6, 2:6] = True
    mesh = mask_to_mesh(Volume(mask, direction=np.diag([-1.0, 1.0, 1.0])), smooth_iterations=10)
    assert signed_volume(mesh) > 0


def test_smoothing_removes_staircase_without_shrinking():
    grid = np.indices((40, 40, 40)) - 19.5
    ball = (grid**2).sum(axis=0) <= 15.0**2
    voxel_volume = ball.sum()
    raw = mask_to_mesh(ball, smooth_iterations=0)
    smooth = mask_to_mesh(ball)
    laplacian = raw.smooth(n_iter=30, relaxation_factor=0.3)  # as round as ours, but smaller
    # windowed sinc keeps the volume; plain Laplacian smoothing shrinks it
    assert abs(smooth.volume / voxel_volume - 1) < 0.02
    assert laplacian.volume / voxel_volume < smooth.volume / voxel_volume - 0.01
    # and the smoothed surface is rounder: radii of its vertices vary less than the staircase's
    centre = np.full(3, 19.5)
    spread_raw = np.linalg.norm(np.asarray(raw.points) - centre, axis=1).std()
    spread_smooth = np.linalg.norm(np.asarray(smooth.points) - centre, axis=1).std()
    assert spread_smooth < 0.6 * spread_raw


def test_downsampled_mesh_keeps_the_object_in_place():
    mask = np.zeros((40, 40, 40), bool)
    mask[10:30, 12:28, 14:26] = True
    full = np.asarray(mask_to_mesh(mask, smooth_iterations=0).bounds).reshape(3, 2)
    coarse_mesh = mask_to_mesh(mask, smooth_iterations=0, downsample=4)
    coarse = np.asarray(coarse_mesh.bounds).reshape(3, 2)
    np.testing.assert_allclose(coarse, full, atol=4.0)  # at most one block off
    assert coarse_mesh.n_cells < mask_to_mesh(mask, smooth_iterations=0).n_cells


def test_auto_downsample_limits_the_grid():
    mask = np.zeros((50, 50, 50), bool)
    mask[5:45, 5:25, 5:15] = True  # extent 40 voxels
    assert render3d.auto_downsample(mask, max_grid=160) == 1
    assert render3d.auto_downsample(mask, max_grid=16) == 3
    assert render3d.auto_downsample(np.zeros((4, 4, 4), bool)) == 1


def test_mask_errors_are_clear():
    with pytest.raises(ValueError, match="implant: empty mask"):
        mask_to_mesh(np.zeros((5, 5, 5), bool), name="implant")
    with pytest.raises(ValueError, match="not a binary mask"):
        mask_to_mesh(np.full((5, 5, 5), 2))
    with pytest.raises(ValueError, match="3D"):
        mask_to_mesh(np.ones((5, 5), bool))
    with pytest.raises(ValueError, match="spacing"):
        mask_to_mesh(np.ones((3, 3, 3), bool), spacing=(1, 0, 1))
    with pytest.raises(ValueError, match="not both"):
        mask_to_mesh(np.ones((3, 3, 3), bool), downsample=2, upsample=2)


# ------------------------------------------------------------------------------------------------------------------
# renders
# ------------------------------------------------------------------------------------------------------------------
def test_render_reconstruction_is_not_blank_and_shows_the_implant(shell_case):
    image = render_reconstruction(
        shell_case["defective"], shell_case["implant"], shell_case["implant"], spacing=SPACING, window_size=SIZE
    )
    assert image.shape == (SIZE[1], SIZE[0], 3) and image.dtype == np.uint8
    assert image.std() > 20
    centre = image[SIZE[1] // 4 : 3 * SIZE[1] // 4, SIZE[0] // 4 : 3 * SIZE[0] // 4]
    assert (~_background(centre)).mean() > 0.5  # the skull fills the middle of the picture
    assert _reddish(image).sum() > 200  # the predicted implant is in view (camera "auto" looks at it)


def test_named_cameras_follow_lps_orientation(shell_case):
    """The hole is on the patient's left (+x): seen from the left the implant shows, from the right it is hidden."""
    kwargs = dict(predicted_implant=shell_case["implant"], spacing=SPACING, window_size=(160, 160), legend=False)
    left = render_reconstruction(shell_case["defective"], camera="left", **kwargs)
    right = render_reconstruction(shell_case["defective"], camera="right", **kwargs)
    assert _reddish(left).sum() > 300
    assert _reddish(right).sum() < 0.05 * _reddish(left).sum()


def test_render_notes_an_empty_prediction_and_rejects_bad_input(shell_case):
    empty = np.zeros_like(shell_case["implant"])
    image = render_reconstruction(shell_case["defective"], empty, spacing=SPACING, window_size=(160, 160))
    assert image.std() > 10 and _reddish(image).sum() == 0
    with pytest.raises(ValueError, match="share one grid"):
        render_reconstruction(shell_case["defective"], np.zeros((4, 4, 4), bool))
    with pytest.raises(ValueError, match="unknown camera"):
        render_reconstruction(shell_case["defective"], camera="sideways")
    with pytest.raises(ValueError, match="nothing to render"):
        render_reconstruction(None)
    with pytest.raises(ValueError, match="truth_style"):
        render_reconstruction(shell_case["defective"], truth_style="dotted")


def test_interactive_returns_a_plotter_with_the_scene(shell_case):
    plotter = render_reconstruction(
        shell_case["defective"], shell_case["implant"], spacing=SPACING, window_size=(160, 160), interactive=True
    )
    try:
        assert isinstance(plotter, pv.Plotter)
        assert len(plotter.meshes) == 2
    finally:
        plotter.close()


def test_distance_mesh_is_zero_when_exact_and_the_shift_when_moved():
    slab = np.zeros((30, 30, 30), bool)
    slab[5:25, 5:25, 10:14] = True
    moved = np.roll(slab, 2, axis=2)  # 2 voxels = 3 mm along the slab's normal
    exact = implant_distance_mesh(slab, slab, spacing=(1.5, 1.5, 1.5))
    assert np.abs(exact["distance_mm"]).max() < 1e-3
    shifted = implant_distance_mesh(moved, slab, spacing=(1.5, 1.5, 1.5))
    assert np.median(shifted["distance_mm"]) == pytest.approx(3.0, abs=0.3)
    with pytest.raises(ValueError, match="spacing"):
        implant_distance_mesh(slab, slab)


def test_error_map_varies_where_the_prediction_is_off(shell_case):
    truth = shell_case["implant"]
    off = np.roll(truth, 2, axis=2) & ~shell_case["defective"]  # pushed 6 mm up, clipped by the skull
    off[np.roll(truth, -3, axis=0) & truth] = True  # and a part that stays right
    common = dict(spacing=SPACING, window_size=SIZE, camera="left", max_distance_mm=6.0)
    exact = render_error_map(truth, truth, **common)
    wrong = render_error_map(off, truth, **common)
    for image in (exact, wrong):
        assert image.std() > 10
    # compare the colours on the implant only (not background, not the colour bar and text at the edges)
    middle = (slice(SIZE[1] // 5, 3 * SIZE[1] // 4), slice(SIZE[0] // 8, 7 * SIZE[0] // 8))
    exact_px = exact[middle][~_background(exact[middle])].astype(float)
    wrong_px = wrong[middle][~_background(wrong[middle])].astype(float)
    assert len(exact_px) > 500 and len(wrong_px) > 500
    # exact: every vertex at 0 mm → one (dark) colour; off: from 0 to 6 mm → many colours, brighter on average
    assert wrong_px.std(axis=0).mean() > 2 * exact_px.std(axis=0).mean()
    assert wrong_px.mean() > exact_px.mean() + 20


@pytest.mark.parametrize("size,title,labels", [(160, ERROR_BAR_SHORT_TITLE, 3), (320, ERROR_BAR_TITLE, 3),
                                                (480, ERROR_BAR_TITLE, 5)])
def test_error_map_colour_bar_fits_the_window(shell_case, size, title, labels):
    """Small windows get a short title and three labels, so that nothing collides or leaves the picture."""
    plotter = render_error_map(
        shell_case["implant"],
        shell_case["implant"],
        spacing=SPACING,
        defective=shell_case["defective"],
        window_size=(size, size),
        interactive=True,
    )
    try:
        assert set(plotter.scalar_bars.keys()) == {title}
        assert plotter.scalar_bars[title].GetNumberOfLabels() == labels
    finally:
        plotter.close()


def test_side_by_side_concatenates_panels(shell_case):
    panels = [
        ("method A", dict(defective=shell_case["defective"], predicted_implant=shell_case["implant"], spacing=SPACING)),
        (
            "error",
            dict(
                kind="error",
                predicted_implant=shell_case["implant"],
                true_implant=shell_case["implant"],
                spacing=SPACING,
            ),
        ),
    ]
    image = render_side_by_side(panels, window_size=(150, 140))
    assert image.shape == (140, 2 * 150 + 4, 3)
    assert image[:, :150].std() > 10 and image[:, 154:].std() > 10
    with pytest.raises(ValueError, match="kind"):
        render_side_by_side([("x", dict(kind="movie", defective=shell_case["defective"]))])
    with pytest.raises(ValueError, match="at least one"):
        render_side_by_side([])


def test_turntable_gif_turns(tmp_path, shell_case):
    path = turntable(
        tmp_path / "spin.gif",
        shell_case["defective"],
        shell_case["implant"],
        spacing=SPACING,
        n_frames=4,
        window_size=(96, 96),
        legend=False,
    )
    frames = iio.imread(path, index=None)
    assert frames.shape[0] == 4 and frames.shape[1:3] == (96, 96)
    assert np.abs(frames[0].astype(int) - frames[2].astype(int)).mean() > 2  # the view changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spin.gif"]  # no temporary left behind
    with pytest.raises(ValueError, match=r"\.gif or \.mp4"):
        turntable(tmp_path / "spin.avi", shell_case["defective"])


@pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is not None, reason="imageio-ffmpeg is installed")
def test_turntable_mp4_without_ffmpeg_says_what_to_install(tmp_path, shell_case):
    with pytest.raises(RuntimeError, match="imageio-ffmpeg"):
        turntable(tmp_path / "spin.mp4", shell_case["defective"])


def test_show_image_wraps_a_render():
    image = np.zeros((50, 80, 3), np.uint8)
    image[10:40, 20:60] = (200, 100, 50)
    fig = show_image(image, title="render")
    assert isinstance(fig, Figure)
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(shown), image)
    assert fig._suptitle.get_text() == "render"
    with pytest.raises(ValueError, match="RGB"):
        show_image(np.zeros((5, 5)))


@pytest.mark.skipif(importlib.util.find_spec("trame_pyvista") is None, reason="the lab extra is not installed")
def test_lab_extra_registers_the_interactive_trame_backend():
    """With the ``lab`` extra, pyvista finds a handler for ``jupyter_backend="trame"`` (notebook 13 with
    ``interactive = True``) instead of falling back to a still image."""
    from importlib.metadata import entry_points

    from pyvista.jupyter import _get_custom_backend_handler

    assert "trame" in {ep.name for ep in entry_points(group="pyvista.jupyter_backends")}
    assert _get_custom_backend_handler("trame") is not None
