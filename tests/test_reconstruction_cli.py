"""Reconstruction end to end: evaluation on phantoms, the CLI (train → evaluate → reconstruct), DDP with gloo."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cranialkit.cli import main
from cranialkit.config import seed_everything
from cranialkit.io import read_mask, read_volume
from cranialkit.reconstruction.evaluation import evaluate_cases, summarize_by_class
from cranialkit.reconstruction.inference import Reconstructor, load_checkpoint
from cranialkit.reconstruction.network import build_network

torch.set_num_threads(1)
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CRANIALKIT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


class _TruthReconstructor:
    """Stands in for a network: returns the true implant (DSC 1) or nothing, and counts its calls."""

    def __init__(self, cases, empty_for=()):
        self.truth = {c.defective_path: c for c in cases}
        self.empty_for = set(empty_for)
        self._calls = 0  # private: not a setting, so not part of the evaluation folder's identity

    @property
    def calls(self) -> int:
        return self._calls

    def reconstruct(self, defective):
        self._calls += 1
        case = next(c for c in self.truth.values() if np.array_equal(c.defective.array, defective.array))
        implant = case.implant
        if case.key in self.empty_for:
            return implant.with_array(np.zeros_like(implant.array, bool))
        return implant


def test_evaluation_table_saves_nrrd_and_resumes(data_dir, tmp_path):
    from cranialkit.data.datasets import phantom_dataset

    dataset = phantom_dataset(n_subjects=1, resolution=32, seed=0)
    cases = list(dataset)
    fake = _TruthReconstructor(cases, empty_for={cases[0].key})
    rows = evaluate_cases(fake, cases, tmp_path / "eval", progress=False)
    assert fake.calls == len(cases) == len(rows)
    by_key = {r["key"]: r for r in rows}
    assert by_key[cases[0].key]["dsc"] == 0.0 and np.isinf(by_key[cases[0].key]["hd95"])
    assert all(by_key[c.key]["dsc"] == 1.0 and by_key[c.key]["hd95"] == 0.0 for c in cases[1:])
    saved = read_mask(tmp_path / "eval" / "implant" / cases[1].defect_class / f"{cases[1].case_id}.nrrd")
    assert saved.same_grid(cases[1].defective) and np.array_equal(saved.array, cases[1].implant.array)
    assert (tmp_path / "eval" / "metrics.csv").read_text().count("\n") == len(cases) + 1
    again = evaluate_cases(fake, cases, tmp_path / "eval", progress=False)  # everything in the manifest: no work
    assert fake.calls == len(cases) and [r["dsc"] for r in again] == [r["dsc"] for r in rows]
    summary = {s["defect_class"]: s for s in summarize_by_class(rows)}
    assert summary[cases[0].defect_class]["dsc"] == 0.0
    assert summary["all cases"]["dsc"] == pytest.approx((len(cases) - 1) / len(cases))


@pytest.mark.slow
def test_cli_train_evaluate_reconstruct(data_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    common = ["--n-subjects", "3", "--device", "cpu"]
    assert main(["train", *common, "--resolution", "32", "--steps", "4", "--val-every", "2", "--augment", "extreme",
                 "--run-dir", str(run_dir)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["coarse"]
    assert report["step"] == 4 and Path(report["best"]).is_file()
    history = json.loads((run_dir / "history.json").read_text())
    assert [r["step"] for r in history["val"]] == [2, 4]

    assert main(["evaluate", *common, "--checkpoint", str(run_dir / "best.pt"), "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "mean of classes" in out and (tmp_path / "ev" / "metrics.csv").is_file()

    from cranialkit.data.datasets import phantom_dataset

    case = phantom_dataset(n_subjects=3, resolution=32)[0]
    target = tmp_path / "implant.nrrd"
    assert main(["reconstruct", str(case.defective_path), "-o", str(target), "--checkpoint",
                 str(run_dir / "best.pt"), "--device", "cpu"]) == 0
    implant = read_volume(target)
    assert implant.same_grid(case.defective)
    assert not (implant.array.astype(bool) & case.defective.array).any()


@pytest.mark.slow
def test_cli_trains_and_uses_both_stages(data_dir, tmp_path, capsys):
    """``train --stage both`` makes <run>/coarse and <run>/fine (the fine stage validated on crops placed by the
    coarse one); ``evaluate`` finds both in the run folder, ``reconstruct`` takes the pair."""
    run_dir = tmp_path / "two"
    common = ["--n-subjects", "3", "--device", "cpu"]
    assert main(["train", *common, "--stage", "both", "--recipe", "smoke", "--run-dir", str(run_dir)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["coarse"]["step"] == report["fine"]["step"] == 4
    fine_history = json.loads((run_dir / "fine" / "history.json").read_text())
    assert [r["step"] for r in fine_history["val"]] == [2, 4]  # validated on the coarse stage's crops
    assert main(["evaluate", *common, "--checkpoint", str(run_dir), "--split", "val"]) == 0
    assert "with the coarse + fine stages" in capsys.readouterr().out

    from cranialkit.data.datasets import phantom_dataset

    case = phantom_dataset(n_subjects=3, resolution=32)[0]
    target = tmp_path / "implant.nrrd"
    assert main(["reconstruct", str(case.defective_path), "-o", str(target), "--checkpoint",
                 str(run_dir / "coarse" / "best.pt"), "--fine-checkpoint", str(run_dir / "fine" / "best.pt")]) == 0
    assert "(coarse + fine)" in capsys.readouterr().out
    assert read_volume(target).same_grid(case.defective)
    # the pair the wrong way round is refused with one line naming the file
    assert main(["reconstruct", str(case.defective_path), "-o", str(target), "--checkpoint",
                 str(run_dir / "fine" / "best.pt"), "--fine-checkpoint", str(run_dir / "coarse" / "best.pt")]) == 1
    assert "fine-stage checkpoint" in capsys.readouterr().err
    # a fine stage alone needs to know the coarse grid it follows
    assert main(["train", *common, "--stage", "fine", "--recipe", "smoke"]) == 2
    assert "--coarse-checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_refit_learns_from_training_and_validation_parts(data_dir, capsys):
    """``train --refit``: the training and validation parts together, no validation (best.pt is the last state), in
    a run folder of its own; the test part is the same as without it, and ``evaluate`` says when the part it scores
    was learnt from."""
    from cranialkit.reconstruction.data import load_splits, refit_splits

    splits = load_splits("phantom", 6, 32)
    refit = refit_splits(splits)
    assert refit["train"].subjects() == sorted(splits["train"].subjects() + splits["val"].subjects())
    assert len(refit["train"]) == len(splits["train"]) + len(splits["val"]) and len(refit["val"]) == 0
    assert [c.key for c in refit["test"]] == [c.key for c in splits["test"]]

    assert main(["train", "--n-subjects", "6", "--device", "cpu", "--recipe", "smoke", "--refit"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out.strip().splitlines()[-1])
    run_dir = Path(report["run_dir"])
    assert run_dir.name.startswith("coarse_refit_") and report["coarse"]["step"] == 4
    assert f"preparing {len(refit['train'])} cases" in captured.err
    assert json.loads((run_dir / "history.json").read_text())["val"] == [] and report["coarse"]["last_val"] == {}
    assert torch.load(run_dir / "best.pt", weights_only=False)["step"] == 4
    # scores on the validation part of a refit run are not held out, and evaluate says so (not for the test part)
    common = ["--n-subjects", "6", "--device", "cpu", "--checkpoint", str(run_dir / "best.pt")]
    assert main(["evaluate", *common, "--split", "val"]) == 0
    assert "trained with --refit" in capsys.readouterr().err
    assert main(["evaluate", *common, "--split", "test"]) == 0
    assert "--refit" not in capsys.readouterr().err


def test_cli_reports_bad_input(tmp_path, capsys):
    from cranialkit.io import write_volume
    from cranialkit.volume import Volume

    write_volume(Volume(np.ones((8, 8, 8), bool)), tmp_path / "x.nrrd")
    assert main(["reconstruct", str(tmp_path / "x.nrrd"), "-o", str(tmp_path / "y.nrrd"), "--checkpoint",
                 str(tmp_path / "missing.pt")]) == 1
    assert "missing.pt: no such checkpoint file" in capsys.readouterr().err
    (tmp_path / "empty.nrrd").write_bytes(b"")
    assert main(["reconstruct", str(tmp_path / "empty.nrrd"), "-o", str(tmp_path / "y.nrrd"), "--checkpoint",
                 str(tmp_path / "missing.pt")]) == 1  # the input is read first: named before the network loads
    assert "empty.nrrd: empty file (0 bytes)" in capsys.readouterr().err
    assert main(["train", "--mix", "folder:heavy"]) == 2
    assert "--mix: 'folder:heavy': expected PATH or PATH:WEIGHT with a number" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_with_gloo_matches_one_process(data_dir, tmp_path):
    """torchrun with 2 CPU processes (gloo) follows the same optimisation path as one process with the same global
    batch: every rank takes its own items of each batch and DDP averages the gradients."""
    from cranialkit.data.datasets import phantom_dataset
    from cranialkit.preprocessing import stack_cases

    dataset = phantom_dataset(n_subjects=3, resolution=32)  # made once, before the ranks start
    for part in dataset.split(seed=0).values():
        stack_cases(part, (32, 32, 32))
    args = ["train", "--n-subjects", "3", "--resolution", "32", "--steps", "3", "--val-every", "3", "--size", "tiny",
            "--no-partial-volume", "--augment", "mild", "--device", "cpu", "--batch-size", "2", "--no-amp"]
    env = {**os.environ, "CRANIALKIT_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           "-m", "cranialkit", *args, "--run-dir", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([*args, "--run-dir", str(tmp_path / "single")]) == 0
    assert len(json.loads((tmp_path / "ddp" / "history.json").read_text())["train"]) == 3
    # Compare what the networks compute, not raw weights: conv biases in front of instance norms get noise-sized
    # gradients (summed in another order under DDP) that Adam scales up, yet they do not change the output.
    ddp, _ = load_checkpoint(tmp_path / "ddp" / "last.pt")
    single, _ = load_checkpoint(tmp_path / "single" / "last.pt")
    seed_everything(0)
    initial = build_network("tiny").eval()  # the weights both runs started from (seed 0)
    probe = torch.from_numpy(dataset[0].defective.array[None, None].astype(np.float32))
    with torch.no_grad():
        out_ddp, out_single, out_initial = ddp(probe), single(probe), initial(probe)
    difference = (out_ddp - out_single).abs().max()
    learned = (out_single - out_initial).abs().max()
    assert difference < 1e-3 < learned


@pytest.mark.realdata
@pytest.mark.slow
def test_reconstruct_real_skullfix_case_on_its_oblique_grid():
    root = REAL_DATA / "skullfix_sample"
    if not root.is_dir():
        pytest.skip(f"real sample data not found at {root}")
    from cranialkit.reconstruction.network import ModelConfig

    defective = read_mask(root / "training_set" / "defective_skull" / "000.nrrd")
    reconstructor = Reconstructor(build_network("tiny"), ModelConfig("tiny", "implant", (32, 32, 32)), "cpu")
    implant = reconstructor.reconstruct(defective)
    assert implant.same_grid(defective)  # 512 × 512 × Z, oblique direction kept
    assert not (implant.array & defective.array).any()
