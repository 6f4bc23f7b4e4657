"""Device choice, data directory and seeding."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import cranialkit
from cranialkit.config import data_dir, device, seed_everything
from cranialkit.volume import Volume


def test_device_auto_and_explicit():
    assert device("cpu") == torch.device("cpu")
    assert device("auto").type in {"cpu", "cuda", "mps"}


def test_data_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CRANIALKIT_DATA_DIR", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d" and (tmp_path / "d").is_dir()
    monkeypatch.delenv("CRANIALKIT_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_dir() == tmp_path / "cache" / "cranialkit"


def test_seed_everything_repeats():
    seed_everything(3)
    a = (np.random.rand(), torch.rand(2))
    seed_everything(3)
    b = (np.random.rand(), torch.rand(2))
    assert a[0] == b[0] and torch.equal(a[1], b[1])


def test_print_config_names_device_and_data_dir(capsys):
    cranialkit.print_config()
    out = capsys.readouterr().out
    assert "device" in out and "data dir" in out and "torch" in out


def test_volume_affine_and_validation():
    vol = Volume(np.zeros((4, 5, 6), bool), spacing=(0.5, 1.0, 2.0), origin=(1, 2, 3))
    assert np.allclose(vol.affine @ [1, 1, 1, 1], [1.5, 3.0, 5.0, 1.0])
    assert np.allclose(vol.extent_mm, [2.0, 5.0, 12.0])
    for bad in (np.zeros((4, 4)), np.zeros((2, 2, 2, 2))):
        try:
            Volume(bad)
        except ValueError as exc:
            assert "3D" in str(exc)
        else:
            raise AssertionError("a non-3D array was accepted")


def test_cpu_threads_leave_the_cores_that_other_work_keeps_busy(monkeypatch):
    import psutil

    from cranialkit.config import busy_cores, cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval, percpu: [100.0, 20.0, 100.0])
    assert busy_cores([0, 1]) == pytest.approx(1.2)
    assert cpu_threads() == (1, "2 cores, 1.2 busy with other work")
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval, percpu: [3.0, 0.0, 100.0])
    assert cpu_threads()[0] == 2  # the busy third CPU is not ours
    assert cpu_threads(3) == (3, "as requested")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads() == (1, "from OMP_NUM_THREADS")
