"""Registration-based augmentation: pairs, shards, the written dataset, resume after interruption, the CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cranialkit.augment.registration import (
    augment_dataset,
    choose_pairs,
    ordered_pairs,
    pair_id,
    prepare_subjects,
    read_manifests,
    shard_pairs,
)
from cranialkit.data.datasets import load_dataset, phantom_dataset
from cranialkit.errors import OutputMismatchError
from cranialkit.io import read_volume
from cranialkit.registration import RegistrationConfig

torch.set_num_threads(2)

TINY = RegistrationConfig(levels=2, iterations=(15, 8), affine_iterations=8)
RESOLUTION = 20


@pytest.fixture(scope="module")
def tiny_phantoms():
    return phantom_dataset(n_subjects=3, resolution=32, classes=("bilateral", "skullfix"))


@pytest.fixture(scope="module")
def uninterrupted(tiny_phantoms, tmp_path_factory):
    """An augmentation run that nothing interrupts (batches of two pairs)."""
    out = tmp_path_factory.mktemp("uninterrupted")
    augment_dataset(tiny_phantoms, out, TINY, resolution=RESOLUTION, batch_size=2, progress=False)
    return out


def _volumes(root: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(root)): read_volume(p).array for p in sorted(root.rglob("*.nrrd"))}


def _without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_ordered_pairs_and_shards():
    pairs = ordered_pairs(["a", "b", "c", "d"])
    assert len(pairs) == 12 and len(set(pairs)) == 12
    assert all(s != t for s, t in pairs)
    shards = [shard_pairs(pairs, i, 3) for i in range(3)]
    assert sorted(p for shard in shards for p in shard) == sorted(pairs)
    assert sum(len(s) for s in shards) == len(pairs)
    assert pair_id("003", "010") == "003to010"
    with pytest.raises(ValueError, match="shard"):
        shard_pairs(pairs, 3, 3)
    with pytest.raises(ValueError, match="num_shards"):
        shard_pairs(pairs, 0, 0)


def test_prepare_subjects_needs_two(tiny_phantoms):
    subjects = prepare_subjects(tiny_phantoms, RESOLUTION)
    assert [s.subject_id for s in subjects] == ["000", "001", "002"]
    first = subjects[0]
    assert first.complete.shape == (RESOLUTION,) * 3 and first.complete.any()
    assert set(first.defects) == {"bilateral", "skullfix"}
    defective, implant = first.defects["skullfix"]
    assert implant.any() and not (defective & implant).any()
    with pytest.raises(ValueError, match="at least 2 subjects"):
        prepare_subjects(tiny_phantoms.subset(subjects=["000"]), RESOLUTION)


def test_augmented_dataset_layout_and_content(tiny_phantoms, uninterrupted):
    out = uninterrupted
    records = read_manifests(out)
    assert len(records) == 6  # N (N - 1) ordered pairs
    for record in records:
        assert record["key"] == pair_id(record["source"], record["target"])
        assert record["dice"] > record["dice_before"]
        assert 0.0 <= record["folding_percent"] <= 100.0 and record["seconds"] > 0
        assert record["alpha"] == TINY.alpha and record["classes"] == ["bilateral", "skullfix"]
    augmented = load_dataset(out)
    assert augmented.layout == "skullbreak" and len(augmented) == 12
    assert augmented.classes() == ["bilateral", "skullfix"]
    case = next(c for c in augmented.cases if c.key == "skullfix/000to001")
    defective, implant, complete = case.defective, case.implant, case.complete
    assert implant.array.any() and not (defective.array & implant.array).any()
    assert np.array_equal(defective.array | implant.array, complete.array)
    # the new case lies on the target's grid (spacing in mm of subject 001's cube)
    target = prepare_subjects(tiny_phantoms, RESOLUTION)[1]
    assert np.allclose(complete.spacing, target.grid.spacing)
    target_dice = 2 * (complete.array & target.complete).sum() / (complete.array.sum() + target.complete.sum())
    assert target_dice > 0.8
    # rerunning with other settings into the same folder is refused, naming the difference
    with pytest.raises(OutputMismatchError, match=r"other inputs or settings \(registration.alpha: 1.0 → 0.1\)"):
        augment_dataset(tiny_phantoms, out, dataclasses.replace(TINY, alpha=0.1), resolution=RESOLUTION,
                        progress=False)


def test_resume_after_interruption_gives_identical_outputs(tiny_phantoms, uninterrupted, tmp_path):
    reference = uninterrupted
    resumed = tmp_path / "resumed"
    calls = []

    def crash_after_three(record: dict) -> None:
        calls.append(record["key"])
        if len(calls) == 3:  # in the middle of the second batch of two
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        augment_dataset(tiny_phantoms, resumed, TINY, resolution=RESOLUTION, batch_size=2, progress=False,
                        on_pair_done=crash_after_three)
    assert len(read_manifests(resumed)) == 3
    records = augment_dataset(tiny_phantoms, resumed, TINY, resolution=RESOLUTION, batch_size=2, progress=False,
                              on_pair_done=calls.append)
    assert len(calls) == 6  # the three missing pairs were done, none twice
    assert _without_timing(records) == _without_timing(read_manifests(reference))
    expected, got = _volumes(reference), _volumes(resumed)
    assert expected.keys() == got.keys() and len(got) == 6 * 5
    for name in expected:
        assert np.array_equal(expected[name], got[name]), name


def test_shards_split_the_work(tiny_phantoms, tmp_path):
    out = tmp_path / "sharded"
    first = augment_dataset(tiny_phantoms, out, TINY, resolution=RESOLUTION, shard=0, num_shards=2, progress=False)
    assert len(first) == 3
    both = augment_dataset(tiny_phantoms, out, TINY, resolution=RESOLUTION, shard=1, num_shards=2, progress=False)
    assert sorted(r["key"] for r in both) == sorted(pair_id(*p) for p in ordered_pairs(["000", "001", "002"]))
    assert sorted(p.name for p in out.glob("manifest*.jsonl")) == [
        "manifest.shard-0-of-2.jsonl", "manifest.shard-1-of-2.jsonl"]
    partial = augment_dataset(tiny_phantoms, tmp_path / "limited", TINY, resolution=RESOLUTION, max_pairs=2,
                              progress=False)
    assert len(partial) == 2


def test_a_pair_budget_registers_a_seeded_choice_of_pairs(tiny_phantoms, tmp_path):
    ids = [f"{i:02d}" for i in range(10)]
    chosen = choose_pairs(ids, 12, seed=3)
    assert len(chosen) == 12 == len(set(chosen)) and chosen == choose_pairs(ids, 12, seed=3)
    assert chosen != choose_pairs(ids, 12, seed=4) and set(chosen) < set(ordered_pairs(ids))
    assert sorted(chosen, key=ordered_pairs(ids).index) == chosen, "kept in the order of ordered_pairs"
    assert choose_pairs(ids[:3], 12) == ordered_pairs(ids[:3]), "all pairs when they fit the budget"
    pairs = [("002", "000"), ("000", "001")]
    records = augment_dataset(tiny_phantoms, tmp_path / "two", TINY, resolution=RESOLUTION, pairs=pairs,
                              progress=False)
    assert sorted(r["key"] for r in records) == ["000to001", "002to000"]
    assert json.loads((tmp_path / "two" / "identity.json").read_text())["pairs"] == [list(p) for p in pairs]
    with pytest.raises(OutputMismatchError, match="pairs"):
        augment_dataset(tiny_phantoms, tmp_path / "two", TINY, resolution=RESOLUTION, pairs=pairs[:1],
                        progress=False)
    with pytest.raises(ValueError, match="000to000|not so"):
        augment_dataset(tiny_phantoms, tmp_path / "bad", TINY, resolution=RESOLUTION, pairs=[("000", "000")],
                        progress=False)


def _cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cranialkit", "register-augment", "--data", "phantom", "--subjects", "3",
            "--resolution", str(RESOLUTION), "--classes", "skullfix", "--levels", "2", "--iterations", "15", "8",
            "--out", str(out), "--no-progress", *extra]


@pytest.mark.slow
def test_cli_killed_midway_then_restarted(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    subprocess.run(_cli(reference), check=True, env=env, capture_output=True, timeout=300)
    killed = tmp_path / "killed"
    process = subprocess.Popen(_cli(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = killed / "manifest.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if manifest.exists() and len(manifest.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(manifest.read_text().splitlines())
    assert 2 <= done < 6
    result = subprocess.run(_cli(killed), check=True, env=env, capture_output=True, text=True, timeout=300)
    assert "6 pairs done" in result.stdout
    assert _without_timing(read_manifests(killed)) == _without_timing(read_manifests(reference))
    expected, got = _volumes(reference), _volumes(killed)
    assert expected.keys() == got.keys() and len(got) == 6 * 3
    for name in expected:
        assert np.array_equal(expected[name], got[name]), name
    assert json.loads((killed / "identity.json").read_text())["resolution"] == RESOLUTION


def test_cli_reports_bad_input(tmp_path, capsys):
    from cranialkit.cli import main

    assert main(["register-augment", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "missing: no such dataset folder" in capsys.readouterr().err
    assert main(["register-augment", "--data", "phantom", "--out", str(tmp_path / "out"), "--iterations", "-3"]) == 2
    assert "--iterations: must be at least 1, got -3" in capsys.readouterr().err
    assert main(["register-augment", "--data", "phantom", "--out", str(tmp_path / "out"), "--shard", "2"]) == 2
    assert "--shard 2: must be below --num-shards 1" in capsys.readouterr().err
