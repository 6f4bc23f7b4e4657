"""Bad inputs through the command line, as users meet them: every one ends with exactly one line on stderr,
``error: <file or --flag>: <problem>; <what to do>``, exit code 2 for a bad command line and 1 for the rest, and no
traceback (``--debug`` shows it). Results made from other inputs are refused, never mixed in silently.

Each case runs ``python -m cranialkit`` in a subprocess. The inputs are made once per module (32³ phantoms, tiny
networks that are saved untrained, small volumes); the runs that do not depend on each other go through a thread
pool, since most of their time is Python and torch starting up.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nrrd
import numpy as np
import pytest
import torch

from cranialkit.generative import get_generator
from cranialkit.io import write_volume
from cranialkit.reconstruction.network import ModelConfig, build_network
from cranialkit.volume import Volume

RESOLUTION = 32
PHANTOMS = ["--n-subjects", "3"]  # evaluate/train on 3 phantom subjects at 32³ (1 test subject, 6 defect classes)


def run(world: dict, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m cranialkit ARGS`` with the module's data directory, one thread, no colour; 5 minutes at most."""
    environment = {key: value for key, value in os.environ.items() if key != "CRANIALKIT_DEBUG"}
    environment.update({"CRANIALKIT_DATA_DIR": str(world["data"]), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                        **(env or {})})
    return subprocess.run([sys.executable, "-m", "cranialkit", *map(str, args)], env=environment,
                          capture_output=True, text=True, timeout=300, cwd=world["root"])


def assert_one_line(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Exit ``code``, exactly one non-empty line on stderr, starting ``error: ``, containing every needle."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr[-3000:]}"
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert "weights_only=False" not in lines[0] and "weights_only` set to `False" not in lines[0]
    assert result.returncode == code, f"exit {result.returncode}, expected {code}: {lines[0]}"
    return lines[0]


# --------------------------------------------------------------------------------------------------- inputs


def _reconstruction_checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    config = ModelConfig("tiny", "implant", (RESOLUTION,) * 3)
    torch.save({"model": build_network("tiny").state_dict(), "model_config": config.to_dict()}, path)
    return path


def _generator_checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    return get_generator("vae")(resolution=16, latent_dim=4, base_channels=4, max_channels=8).save(path)


class _RunsCode:
    """Unpickling this calls ``os.system``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _box_case(shape=(12, 12, 10), origin=(-3.0, -2.0, 1.0)) -> tuple[Volume, Volume, Volume]:
    """A hollow box 'skull' with a hole in its top: (complete, defective, implant) at 0.5 mm."""
    complete = np.zeros(shape, bool)
    complete[2:-2, 2:-2, 2:-2] = True
    complete[3:-3, 3:-3, 3:-3] = False
    implant = np.zeros(shape, bool)
    implant[4:8, 4:8, shape[2] - 3] = True
    implant &= complete
    geometry = dict(spacing=(0.5, 0.5, 0.5), origin=origin)
    return Volume(complete, **geometry), Volume(complete & ~implant, **geometry), Volume(implant, **geometry)


def _box_dataset(root: Path, implant_of_001: Volume | None = None, drop_implant: bool = False) -> Path:
    for case_id in ("000", "001"):
        complete, defective, implant = _box_case()
        write_volume(complete, root / "complete_skull" / f"{case_id}.nrrd")
        write_volume(defective, root / "defective_skull" / "bilateral" / f"{case_id}.nrrd")
        if case_id == "001" and drop_implant:
            continue
        chosen = implant_of_001 if case_id == "001" and implant_of_001 is not None else implant
        write_volume(chosen, root / "implant" / "bilateral" / f"{case_id}.nrrd")
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bad_inputs")
    files = root / "files"
    files.mkdir()
    w = {"root": root, "data": root / "data", "files": files}
    good = np.zeros((16, 16, 16), np.uint8)
    good[4:12, 4:12, 4:12] = 1
    w["good"] = write_volume(Volume(good, spacing=(1.0, 1.0, 1.0)), files / "good.nrrd")
    ct = np.random.default_rng(0).integers(-1000, 2000, (16, 16, 16)).astype(np.int16)
    w["ct"] = write_volume(Volume(ct, spacing=(0.5, 0.5, 0.5)), files / "ct.nrrd")
    w["empty"] = write_volume(Volume(np.zeros((16, 16, 16), np.uint8)), files / "empty.nrrd")
    nan = good.astype(np.float32)
    nan[0, 0, 0] = np.nan
    w["nan"] = write_volume(Volume(nan), files / "nan.nrrd")
    nrrd.write(str(files / "four_d.nrrd"), np.zeros((2, 8, 8, 8), np.uint8))
    nrrd.write(str(files / "no_spacing.nrrd"), good)
    nrrd.write(str(files / "huge_spacing.nrrd"), good, {"space directions": np.diag([1e6, 1e6, 1e6])})
    data = w["good"].read_bytes()
    (files / "truncated.nrrd").write_bytes(data[: len(data) // 2])
    (files / "notes.txt").write_text("not a volume")

    w["recon_a"] = _reconstruction_checkpoint(files / "recon_a.pt", 0)
    w["recon_b"] = _reconstruction_checkpoint(files / "recon_b.pt", 1)
    w["vae_a"] = _generator_checkpoint(files / "vae_a.pt", 0)
    w["vae_b"] = _generator_checkpoint(files / "vae_b.pt", 1)
    (files / "empty.pt").write_bytes(b"")
    checkpoint = w["recon_a"].read_bytes()
    (files / "truncated.pt").write_bytes(checkpoint[: len(checkpoint) // 2])
    (files / "text.pt").write_text("hello, I am not a checkpoint\n")
    w["marker"] = root / "code_ran"
    with open(files / "evil.pt", "wb") as fh:
        pickle.dump({"model": _RunsCode(w["marker"])}, fh)
    torch.save({"model": _RunsCode(w["marker"])}, files / "evil_zip.pt")

    complete, defective, implant = _box_case()
    w["ds_good"] = _box_dataset(root / "ds_good")
    w["ds_shifted"] = _box_dataset(root / "ds_shifted", Volume(implant.array, implant.spacing, implant.origin + 5))
    w["ds_flipped"] = _box_dataset(root / "ds_flipped", Volume(implant.array, implant.spacing, implant.origin,
                                                               np.diag([1.0, -1.0, 1.0])))
    w["ds_copy"] = _box_dataset(root / "ds_copy", defective)
    w["ds_missing"] = _box_dataset(root / "ds_missing", drop_implant=True)
    w["ds_unknown"] = root / "ds_unknown"
    (w["ds_unknown"] / "scans").mkdir(parents=True)
    (w["ds_unknown"] / "notes.txt").write_text("x")
    w["data_file"] = root / "data_is_a_file"
    w["data_file"].write_text("x")

    # Outputs made by one checkpoint / setting, which later runs with others must not resume into.
    w["eval_a"] = root / "eval_a"
    made = run(w, "evaluate", *PHANTOMS, "--checkpoint", w["recon_a"], "--out", w["eval_a"], "--device", "cpu")
    assert made.returncode == 0, made.stderr[-3000:]
    w["gen_a"] = root / "gen_a"
    made = run(w, "generate", "--checkpoint", w["vae_a"], "--n", "2", "--out", w["gen_a"], "--device", "cpu")
    assert made.returncode == 0, made.stderr[-3000:]
    w["run_a"] = root / "run_a"
    made = run(w, "train", *PHANTOMS, "--resolution", RESOLUTION, "--steps", "1", "--val-every", "1",
               "--run-dir", w["run_a"], "--device", "cpu")
    assert made.returncode == 0, made.stderr[-3000:]
    return w


# ------------------------------------------------------------------------------------------- the cases

# (id, arguments as a function of the world, expected exit code, needles the one line must contain)
CASES = [
    # numbers and choices: refused while the command line is read, before any data is touched
    ("steps_negative", lambda w: ["train", "--steps", "-5"], 2, ["--steps", "at least 1, got -5"]),
    ("batch_size_zero", lambda w: ["train", "--batch-size", "0"], 2, ["--batch-size", "got 0"]),
    ("resolution_7", lambda w: ["train", "--resolution", "7"], 2, ["--resolution", "multiple of 8"]),
    ("resolution_for_size", lambda w: ["train", "--resolution", "40", "--size", "compact"], 2,
     ["--resolution 40", "divisible by 16"]),
    ("lr_zero", lambda w: ["train", "--lr", "0"], 2, ["--lr", "above 0"]),
    ("steps_not_a_number", lambda w: ["train", "--steps", "many"], 2, ["--steps", "expected an integer"]),
    ("data_missing", lambda w: ["train", "--data", w["root"] / "nowhere"], 2,
     ["--data", "nowhere: no such dataset folder"]),
    ("mix_missing", lambda w: ["train", "--mix", f"{w['root'] / 'nowhere'}:2"], 2, ["--mix", "no such dataset"]),
    ("unknown_option", lambda w: ["train", "--stepz", "3"], 2, ["--stepz", "unknown argument"]),
    ("iterations_negative", lambda w: ["register-augment", "--data", "phantom", "--out", w["root"] / "reg",
                                       "--iterations", "-3"], 2, ["--iterations", "at least 1, got -3"]),
    ("max_pairs_negative", lambda w: ["register-augment", "--data", "phantom", "--out", w["root"] / "reg",
                                      "--max-pairs", "-1"], 2, ["--max-pairs", "got -1"]),
    ("shard_out_of_range", lambda w: ["register-augment", "--data", "phantom", "--out", w["root"] / "reg",
                                      "--shard", "3", "--num-shards", "2"], 2, ["--shard 3", "--num-shards 2"]),
    ("smooth_negative", lambda w: ["export-implant", w["good"], "-o", w["root"] / "x.stl", "--smooth", "-3"], 2,
     ["--smooth", "got -3"]),
    ("pass_band_5", lambda w: ["export-implant", w["good"], "-o", w["root"] / "x.stl", "--pass-band", "5"], 2,
     ["--pass-band", "at most 2, got 5"]),
    ("device_no_such_gpu", lambda w: ["evaluate", "--checkpoint", w["recon_a"], "--device", "cuda:99"], 2,
     ["--device: cuda:99: "]),
    ("device_not_a_device", lambda w: ["reconstruct", w["good"], "-o", w["root"] / "y.nrrd", "--checkpoint",
                                       w["recon_a"], "--device", "gpu"], 2, ["--device: gpu: not a device name"]),
    ("generate_n_zero", lambda w: ["generate", "--checkpoint", w["vae_a"], "--out", w["root"] / "g", "--n", "0"], 2,
     ["--n", "got 0"]),
    ("generate_spacing_huge", lambda w: ["generate", "--checkpoint", w["vae_a"], "--out", w["root"] / "g",
                                         "--spacing-mm", "1e6"], 2, ["--spacing-mm", "at most 20"]),
    ("generator_config_json", lambda w: ["train-generator", "--model", "vae", "--checkpoint", w["root"] / "c.pt",
                                         "--config", "{bad"], 2, ["--config", "not valid JSON"]),
    ("generator_unknown", lambda w: ["train-generator", "--model", "gpt", "--checkpoint", w["root"] / "c.pt"], 2,
     ["--model gpt", "unknown generator", "vae"]),
    ("phantom_resolution", lambda w: ["make-phantoms", "--resolution", "7"], 2, ["--resolution", "got 7"]),
    ("output_format", lambda w: ["reconstruct", w["good"], "-o", w["root"] / "out.txt", "--checkpoint",
                                 w["recon_a"]], 2, ["out.txt", "write a .nrrd"]),
    ("output_below_a_file", lambda w: ["reconstruct", w["good"], "-o", w["files"] / "notes.txt" / "y.nrrd",
                                       "--checkpoint", w["recon_a"]], 2, ["notes.txt is a file"]),
    ("input_missing", lambda w: ["reconstruct", w["root"] / "nope.nrrd", "-o", w["root"] / "y.nrrd",
                                 "--checkpoint", w["recon_a"]], 2, ["nope.nrrd: no such file"]),
    # input volumes: named, with what is wrong with them
    ("ct_scan_as_mask", lambda w: ["reconstruct", w["ct"], "-o", w["root"] / "y.nrrd", "--checkpoint",
                                   w["recon_a"]], 1, ["ct.nrrd", "looks like a CT scan", "HU"]),
    ("empty_mask", lambda w: ["reconstruct", w["empty"], "-o", w["root"] / "y.nrrd", "--checkpoint", w["recon_a"]],
     1, ["empty.nrrd: empty mask"]),
    ("nan_volume", lambda w: ["reconstruct", w["nan"], "-o", w["root"] / "y.nrrd", "--checkpoint", w["recon_a"]],
     1, ["nan.nrrd: contains NaN"]),
    ("four_d_volume", lambda w: ["reconstruct", w["files"] / "four_d.nrrd", "-o", w["root"] / "y.nrrd",
                                 "--checkpoint", w["recon_a"]], 1, ["four_d.nrrd: expected a 3D volume, got 4D"]),
    ("truncated_volume", lambda w: ["reconstruct", w["files"] / "truncated.nrrd", "-o", w["root"] / "y.nrrd",
                                    "--checkpoint", w["recon_a"]], 1, ["truncated.nrrd: unreadable or truncated"]),
    ("no_spacing", lambda w: ["reconstruct", w["files"] / "no_spacing.nrrd", "-o", w["root"] / "y.nrrd",
                              "--checkpoint", w["recon_a"]], 1, ["no_spacing.nrrd", "no voxel spacing"]),
    ("spacing_1e6", lambda w: ["reconstruct", w["files"] / "huge_spacing.nrrd", "-o", w["root"] / "y.nrrd",
                               "--checkpoint", w["recon_a"]], 1,
     ["huge_spacing.nrrd", "implausible voxel spacing", "0.05–20 mm"]),
    # checkpoints: what the file is, never torch's advice to load it unsafely
    ("checkpoint_missing", lambda w: ["reconstruct", w["good"], "-o", w["root"] / "y.nrrd", "--checkpoint",
                                      w["root"] / "missing.pt"], 1, ["missing.pt: no such checkpoint file"]),
    ("checkpoint_empty", lambda w: ["reconstruct", w["good"], "-o", w["root"] / "y.nrrd", "--checkpoint",
                                    w["files"] / "empty.pt"], 1, ["empty.pt: empty file (0 bytes)"]),
    ("checkpoint_truncated", lambda w: ["evaluate", "--checkpoint", w["files"] / "truncated.pt"], 1,
     ["truncated.pt: truncated or corrupt checkpoint"]),
    ("checkpoint_text", lambda w: ["reconstruct", w["good"], "-o", w["root"] / "y.nrrd", "--checkpoint",
                                   w["files"] / "text.pt"], 1, ["text.pt: not a checkpoint"]),
    ("checkpoint_runs_code", lambda w: ["reconstruct", w["good"], "-o", w["root"] / "y.nrrd", "--checkpoint",
                                        w["files"] / "evil_zip.pt"], 1, ["evil_zip.pt", "refuses to load"]),
    ("checkpoint_legacy_pickle", lambda w: ["evaluate", "--checkpoint", w["files"] / "evil.pt"], 1, ["evil.pt"]),
    ("generator_to_reconstruct", lambda w: ["reconstruct", w["good"], "-o", w["root"] / "y.nrrd", "--checkpoint",
                                            w["vae_a"]], 1,
     ["vae_a.pt", "a VAE generator checkpoint (resolution 16)", "not a cranialkit reconstruction checkpoint"]),
    ("reconstruction_to_generate", lambda w: ["generate", "--checkpoint", w["recon_a"], "--out", w["root"] / "g"], 1,
     ["recon_a.pt", "reconstruction checkpoint (size tiny, 32³", "not a generator checkpoint"]),
    # datasets: layout and geometry
    ("layout_unknown", lambda w: ["dataset-info", w["ds_unknown"]], 1, ["ds_unknown: unknown dataset layout"]),
    ("implant_missing", lambda w: ["dataset-info", w["ds_missing"]], 1, ["implant/bilateral: missing for cases 001"]),
    ("implant_shifted", lambda w: ["dataset-info", w["ds_shifted"]], 1,
     ["ds_shifted/implant/bilateral/001.nrrd", "different grids (origin"]),
    ("implant_flipped", lambda w: ["dataset-info", w["ds_flipped"]], 1, ["different grids (direction (axis 1"]),
    ("implant_is_the_skull", lambda w: ["dataset-info", w["ds_copy"]], 1, ["001.nrrd", "is a copy of its defective"]),
    ("evaluate_shifted", lambda w: ["evaluate", "--data", w["ds_shifted"], "--checkpoint", w["recon_a"]], 1,
     ["different grids (origin"]),
    # the environment
    ("data_dir_is_a_file", lambda w: ["make-phantoms"], 1, ["CRANIALKIT_DATA_DIR=", "is a file, not a folder"]),
    # resumable outputs made by another checkpoint or with other settings
    ("evaluate_other_checkpoint", lambda w: ["evaluate", *PHANTOMS, "--checkpoint", w["recon_b"], "--out",
                                             w["eval_a"], "--device", "cpu"], 1,
     ["eval_a: holds results made from other inputs or settings", "reconstructor.model.weights", "--overwrite"]),
    ("evaluate_other_split", lambda w: ["evaluate", *PHANTOMS, "--checkpoint", w["recon_a"], "--split", "val",
                                        "--out", w["eval_a"], "--device", "cpu"], 1, ["eval_a", "cases:"]),
    ("generate_other_checkpoint", lambda w: ["generate", "--checkpoint", w["vae_b"], "--n", "2", "--out",
                                             w["gen_a"], "--device", "cpu"], 1, ["gen_a", "generator.weights"]),
    ("train_other_lr", lambda w: ["train", *PHANTOMS, "--resolution", RESOLUTION, "--steps", "1", "--val-every", "1",
                                  "--run-dir", w["run_a"], "--lr", "0.1"], 1, ["run_a", "lr: 0.003 → 0.1"]),
    ("train_other_data", lambda w: ["train", "--data", w["ds_good"], "--resolution", RESOLUTION, "--steps", "1",
                                    "--val-every", "1", "--run-dir", w["run_a"]], 1, ["run_a", "data."]),
    ("train_other_size", lambda w: ["train", *PHANTOMS, "--resolution", RESOLUTION, "--steps", "1", "--val-every",
                                    "1", "--run-dir", w["run_a"], "--size", "tiny"], 1,
     ["run_a", "size: compact → tiny"]),
]
ENVIRONMENTS = {"data_dir_is_a_file": lambda w: {"CRANIALKIT_DATA_DIR": str(w["data_file"])}}


@pytest.fixture(scope="module")
def results(world) -> dict[str, subprocess.CompletedProcess]:
    def one(case):
        name, arguments, _, _ = case
        env = ENVIRONMENTS[name](world) if name in ENVIRONMENTS else None
        return name, run(world, *arguments(world), env=env)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(one, CASES))


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30 and len({name for name, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize("name,code,needles", [(n, c, k) for n, _, c, k in CASES], ids=[n for n, *_ in CASES])
def test_bad_input_gets_one_clear_line(results, name, code, needles):
    assert_one_line(results[name], code, *needles)


def test_no_code_ran_from_a_pickled_checkpoint(results, world):
    assert "checkpoint_runs_code" in results and "checkpoint_legacy_pickle" in results
    assert not world["marker"].exists()


def test_refused_outputs_are_left_as_they_were(results, world):
    """The refusals above did not touch what the first runs made; --overwrite starts over with the new inputs."""
    assert (world["eval_a"] / "metrics.csv").read_text().count("\n") == 6 + 1  # 6 defect classes of 1 test subject
    before = (world["eval_a"] / "identity.json").read_text()
    again = run(world, "evaluate", *PHANTOMS, "--checkpoint", world["recon_b"], "--out", world["eval_a"],
                "--device", "cpu", "--overwrite")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (world["eval_a"] / "identity.json").read_text() != before
    assert len((world["eval_a"] / "manifest.jsonl").read_text().splitlines()) == 6


def test_debug_shows_the_traceback(world):
    for flag, env in ((["--debug"], None), ([], {"CRANIALKIT_DEBUG": "1"})):
        result = run(world, *flag, "dataset-info", world["ds_shifted"], env=env)
        assert result.returncode != 0
        assert "Traceback" in result.stderr and "GeometryError" in result.stderr


def test_info_names_an_unusable_data_directory(world):
    result = run(world, "info", env={"CRANIALKIT_DATA_DIR": str(world["data_file"])})
    assert_one_line(result, 1, "CRANIALKIT_DATA_DIR=", "is a file")
    assert "data dir" in result.stdout and "not usable" in result.stdout and "torch" in result.stdout


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_names_the_file_not_a_temporary_one(world, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = run(world, "make-phantoms", "--n-subjects", "1", "--resolution", "16", "--out", locked / "ph")
    finally:
        locked.chmod(0o755)
    line = assert_one_line(result, 1, "locked", "Permission denied")
    assert ".tmp" not in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(world):
    assert_one_line(run(world, "reconstruct", world["good"], "-o", world["root"] / "y.nrrd", "--checkpoint",
                        world["recon_a"], "--device", "cuda"), 2, "--device: cuda: CUDA is not available")


def test_two_processes_evaluating_into_one_folder_do_each_case_once(world):
    out = world["root"] / "shared_eval"
    args = ["evaluate", *PHANTOMS, "--checkpoint", world["recon_a"], "--out", out, "--device", "cpu", "--split", "all"]
    environment = {**os.environ, "CRANIALKIT_DATA_DIR": str(world["data"]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "cranialkit", *map(str, args)]
    first, second = (subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True) for _ in range(2))
    for process in (first, second):
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
    lines = [line for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]
    keys = [json.loads(line)["key"] for line in lines]
    assert len(keys) == 18 and len(set(keys)) == 18  # 3 subjects × 6 classes, each done once
    assert (out / "metrics.csv").read_text().count("\n") == 18 + 1
