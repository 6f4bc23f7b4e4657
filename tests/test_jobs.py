"""Atomic writes and the resumable manifest used by every long job."""

from __future__ import annotations

import pytest
import torch

from cranialkit.jobs import Manifest, atomic_path, atomic_torch_save, atomic_write_text


def test_atomic_path_keeps_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "result.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"], "temporary file left behind"
    assert target.stat().st_mode & 0o044, "results must be readable by others, not 0600 like mkstemp's files"


def test_atomic_torch_save_loads_with_weights_only(tmp_path):
    path = atomic_torch_save({"w": torch.arange(3), "step": 7}, tmp_path / "ckpt.pt")
    loaded = torch.load(path, weights_only=True)
    assert loaded["step"] == 7 and torch.equal(loaded["w"], torch.arange(3))


def test_manifest_survives_reopen_and_a_cut_off_last_line(tmp_path):
    path = tmp_path / "manifest.jsonl"
    manifest = Manifest(path)
    manifest.add({"key": "a", "dice": 0.9})
    manifest.add({"key": "b", "dice": 0.8})
    with open(path, "a") as fh:
        fh.write('{"key": "c", "di')  # a crash while appending
    reopened = Manifest(path)
    assert "a" in reopened and "b" in reopened and "c" not in reopened
    assert [r["dice"] for r in reopened.records()] == [0.9, 0.8]
    with pytest.raises(ValueError):
        reopened.add({"dice": 1.0})
