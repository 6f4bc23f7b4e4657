"""Tests of cranialkit.export and ``cranialkit export-implant | render``: watertight meshes whose volume matches."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import pyvista as pv
from scipy import ndimage

from cranialkit import export
from cranialkit.cli import main
from cranialkit.data.phantom import PHANTOM_CLASSES, make_defect, make_skull
from cranialkit.export import clean_implant_mask, crop_to_mask, export_implant, has_collapsed_vertices, implant_mesh
from cranialkit.io import VolumeFileError, read_mask, write_volume
from cranialkit.viz.render3d import is_watertight, signed_volume
from cranialkit.volume import Volume


@pytest.fixture(scope="module")
def phantom_skull() -> Volume:
    return make_skull(3, shape=(64, 64, 64))


def _voxel_world_box(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """World bounding box (mm) of the union of the set voxels' cubes (parallelepipeds when oblique)."""
    centres = volume.origin + (np.argwhere(volume.array) * volume.spacing) @ volume.direction.T
    half = np.abs(volume.direction) @ (volume.spacing / 2)  # half-extent of one voxel along x, y, z
    return centres.min(axis=0) - half, centres.max(axis=0) + half


@pytest.mark.parametrize("defect_class", PHANTOM_CLASSES)
def test_phantom_implant_exports_watertight_with_its_voxel_volume(tmp_path, phantom_skull, defect_class):
    _, implant = make_defect(phantom_skull, defect_class, seed=1)
    report = export_implant(implant, tmp_path / "implant.stl")
    voxel_ml = implant.array.sum() * np.prod(implant.spacing) / 1000
    assert report["voxel_volume_ml"] == pytest.approx(voxel_ml)
    assert report["watertight"] is True
    assert abs(report["volume_ml"] / voxel_ml - 1) < 0.05  # the "must show" figure
    written = pv.read(tmp_path / "implant.stl")
    assert is_watertight(written) and written.n_cells == report["n_faces"]
    # in world mm: the mesh fills the voxels' box (± half a voxel: smoothing rounds corners and edges)
    low, high = _voxel_world_box(implant)
    box = report["bounding_box_mm"]
    np.testing.assert_allclose(box["min"], low, atol=implant.spacing[0] / 2)
    np.testing.assert_allclose(box["max"], high, atol=implant.spacing[0] / 2)
    np.testing.assert_allclose(box["size"], np.asarray(box["max"]) - np.asarray(box["min"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["implant.stl"]  # written atomically, no temporary left


def test_ply_export_and_unsmoothed_mesh(tmp_path, phantom_skull):
    _, implant = make_defect(phantom_skull, "skullfix", seed=2)
    report = export_implant(implant, tmp_path / "implant.ply", smooth=False)
    mesh = pv.read(tmp_path / "implant.ply")
    assert mesh.n_cells == report["n_faces"] and is_watertight(mesh)
    assert signed_volume(mesh) > 0  # faces point outward, as printers expect
    assert abs(report["volume_difference"]) < 0.05


def test_thin_implant_needs_and_gets_refinement():
    plate = np.zeros((20, 20, 20), bool)
    plate[4:16, 4:16, 9:11] = True  # 2 voxels thick: marching cubes alone cuts ~5 % off the edges
    voxel_volume = plate.sum() * 8.0
    coarse = implant_mesh(plate, spacing=(2.0, 2.0, 2.0), refine=1)
    auto = implant_mesh(plate, spacing=(2.0, 2.0, 2.0))
    assert signed_volume(coarse) / voxel_volume < 0.97
    assert abs(signed_volume(auto) / voxel_volume - 1) <= 0.02
    with pytest.raises(ValueError, match="refine"):
        implant_mesh(plate, spacing=(2.0, 2.0, 2.0), refine=0)


def test_cavities_and_specks_do_not_break_watertightness(tmp_path):
    grid = np.indices((30, 30, 30)) - 14.5
    ball = (grid**2).sum(axis=0) <= 10**2
    ball[14, 14, 14] = False  # a one-voxel cavity: smoothing would collapse its tiny surface into a point
    ball[2, 2, 2] = True  # a lone voxel: noise
    ball[2:4, 26:28, 2:4] = True  # a separate 8-voxel piece: kept
    cleaned = clean_implant_mask(ball)
    assert cleaned[14, 14, 14] and not cleaned[2, 2, 2] and cleaned[2:4, 26:28, 2:4].all()
    report = export_implant(Volume(ball, (0.5, 0.5, 0.5)), tmp_path / "ball.stl")
    assert report["watertight"] and abs(report["volume_difference"]) < 0.02
    assert report["cleaned_voxels"] == 2


def test_collapsed_vertices_are_detected():
    mesh = pv.PolyData.from_regular_faces(
        np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 1e-5]], float), np.array([[0, 1, 2], [0, 1, 3]])
    )
    assert has_collapsed_vertices(mesh)
    assert not has_collapsed_vertices(pv.PolyData(np.asarray(mesh.points)[:3]))


def test_smoothing_backs_off_when_it_squeezes_a_sliver(monkeypatch):
    calls = []

    def first_two_collapse(mesh, tolerance_mm=1e-3):
        calls.append(mesh.n_points)
        return len(calls) <= 2

    monkeypatch.setattr(export, "has_collapsed_vertices", first_two_collapse)
    plate = np.zeros((20, 20, 20), bool)
    plate[4:16, 4:16, 8:12] = True
    mesh = implant_mesh(plate, spacing=(1.0, 1.0, 1.0), smooth_iterations=20)
    assert len(calls) == 2  # 20 iterations, then 10, then none: the raw surface is not checked
    assert mesh.field_data["smooth_iterations"][0] == 0 and is_watertight(mesh)


@pytest.mark.slow
def test_strong_smoothing_on_a_128_phantom_still_writes_a_closed_mesh(tmp_path):
    _, implant = make_defect(make_skull(0, shape=(128, 128, 128)), "frontoorbital", seed=0)
    report = export_implant(implant, tmp_path / "implant.stl", smooth_iterations=30, pass_band=0.03)
    assert report["watertight"] and abs(report["volume_difference"]) < 0.05


def test_crop_keeps_world_positions():
    mask = np.zeros((20, 20, 20), bool)
    mask[5:8, 10:12, 3:9] = True
    angle = np.deg2rad(20)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    volume = Volume(mask, (0.7, 0.9, 1.1), (3.0, -4.0, 5.0), direction)
    cropped = crop_to_mask(volume)
    assert cropped.shape == (5, 4, 8)
    np.testing.assert_allclose(_voxel_world_box(cropped), _voxel_world_box(volume))


def test_oblique_array_input_matches_volume_input():
    mask = np.zeros((16, 16, 16), bool)
    mask[4:12, 5:11, 6:10] = True
    angle = np.deg2rad(9)
    direction = np.array([[1, 0, 0], [0, np.cos(angle), np.sin(angle)], [0, -np.sin(angle), np.cos(angle)]])
    spacing, origin = np.array([0.45, 0.45, 0.63]), np.array([-120.0, -128.0, -10.0])
    from_array = implant_mesh(mask, spacing, origin, direction)
    from_volume = implant_mesh(Volume(mask, spacing, origin, direction))
    np.testing.assert_allclose(from_array.points, from_volume.points)
    low, high = _voxel_world_box(Volume(mask, spacing, origin, direction))
    bounds = np.asarray(from_volume.bounds).reshape(3, 2)
    np.testing.assert_allclose(bounds[:, 0], low, atol=0.2)  # smoothing moves the surface by a fraction of a voxel
    np.testing.assert_allclose(bounds[:, 1], high, atol=0.2)


def test_export_errors_name_the_problem(tmp_path):
    empty = Volume(np.zeros((5, 5, 5), bool))
    with pytest.raises(ValueError, match="empty"):
        export_implant(empty, tmp_path / "x.stl")
    with pytest.raises(ValueError, match="unsupported mesh format"):
        export_implant(Volume(np.ones((3, 3, 3), bool)), tmp_path / "x.obj")
    with pytest.raises(ValueError, match="spacing"):
        implant_mesh(np.ones((3, 3, 3), bool))
    bad = tmp_path / "labels.nrrd"
    write_volume(Volume(np.full((4, 4, 4), 3, np.uint8)), bad)
    with pytest.raises(VolumeFileError, match=str(bad)):
        export_implant(bad, tmp_path / "x.stl")
    assert not (tmp_path / "x.stl").exists()


# ------------------------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------------------------
def test_cli_export_implant_reports_volume_and_box(tmp_path, phantom_skull, capsys):
    defective, implant = make_defect(phantom_skull, "parietotemporal", seed=4)
    write_volume(implant, tmp_path / "implant.nrrd")
    write_volume(defective, tmp_path / "defective.nrrd")
    code = main(
        [
            "export-implant",
            str(tmp_path / "implant.nrrd"),
            "-o",
            str(tmp_path / "implant.stl"),
            "--smooth",
            "10",
            "--json",
            str(tmp_path / "report.json"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert f"volume {report['volume_ml']:.2f} ml" in out and "bounding box" in out and "watertight" in out
    assert report["watertight"] and abs(report["volume_difference"]) < 0.05
    umask = os.umask(0)
    os.umask(umask)
    for written in ("implant.stl", "report.json"):  # not left private (0600) by the atomic temporary file
        assert (tmp_path / written).stat().st_mode & 0o777 == 0o666 & ~umask

    code = main(
        [
            "render",
            str(tmp_path / "defective.nrrd"),
            "--implant",
            str(tmp_path / "implant.nrrd"),
            "-o",
            str(tmp_path / "picture.png"),
            "--size",
            "160",
            "120",
        ]
    )
    assert code == 0
    import imageio.v3 as iio

    picture = iio.imread(tmp_path / "picture.png")
    assert picture.shape[:2] == (120, 160) and picture.std() > 10


def test_cli_errors_are_clear(tmp_path, capsys):
    missing = tmp_path / "nope.nrrd"
    assert main(["export-implant", str(missing), "-o", str(tmp_path / "x.stl")]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err
    (tmp_path / "skull.nrrd").write_bytes(b"")
    assert main(["render", str(tmp_path / "skull.nrrd"), "-o", str(tmp_path / "x.gif")]) == 2
    assert "x.gif: write a .png or .jpg or .jpeg file" in capsys.readouterr().err
    export = ["export-implant", str(tmp_path / "skull.nrrd"), "-o", str(tmp_path / "x.stl")]
    assert main([*export, "--smooth", "-3"]) == 2
    assert "--smooth: must be at least 0, got -3" in capsys.readouterr().err
    assert main([*export, "--pass-band", "5"]) == 2
    assert "--pass-band: must be above 0 and at most 2, got 5" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------------
# real SkullFix implant: oblique geometry (gantry tilt), 0.45 × 0.45 × 0.63 mm voxels
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.slow
def test_real_skullfix_implant_exports_in_world_mm(shared_data, tmp_path):
    path = shared_data / "skullfix_sample" / "training_set" / "implant" / "000.nrrd"
    implant = read_mask(path)
    assert not np.allclose(implant.direction, np.eye(3))  # the oblique case
    report = export_implant(implant, tmp_path / "implant_000.stl")
    assert report["watertight"]
    assert abs(report["volume_ml"] / report["voxel_volume_ml"] - 1) < 0.05
    assert 10 < report["voxel_volume_ml"] < 100  # a skull-vault patch of a few tens of ml
    # the mesh lies where the voxels are in world mm (not in index space, not on an axis-aligned grid)
    low, high = _voxel_world_box(implant)
    box = report["bounding_box_mm"]
    np.testing.assert_allclose(box["min"], low, atol=1.5)
    np.testing.assert_allclose(box["max"], high, atol=1.5)
    # every vertex is within about one voxel of the implant's voxels
    mesh = pv.read(tmp_path / "implant_000.stl")
    points = np.asarray(mesh.points)[::50]
    near_implant = crop_to_mask(implant, margin=4)  # the distance map of the whole 512² scan would be slow
    index = ((points - near_implant.origin) @ near_implant.direction) / near_implant.spacing
    distance = ndimage.distance_transform_edt(~near_implant.array, sampling=near_implant.spacing)
    near = ndimage.map_coordinates(distance, index.T, order=1)
    assert np.percentile(near, 99) < 1.0
