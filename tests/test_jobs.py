"""Atomic writes, the resumable manifest, output identities and work claims used by every long job."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest
import torch

from cranialkit.errors import OutputMismatchError
from cranialkit.jobs import (
    IDENTITY_FILE,
    Manifest,
    atomic_path,
    atomic_torch_save,
    atomic_write_text,
    claim_output,
    exclusive_run,
    unfinished,
)


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


def test_files_are_written_with_the_users_umask(tmp_path):
    """Atomic writes start from a private temporary file; what they leave must be readable like any file the user
    makes (0644 under umask 022, 0664 under 002), or a data folder shared by a class gives "Permission denied"."""
    import numpy as np

    from cranialkit.data.phantom import make_phantom_dataset
    from cranialkit.io import read_mask, write_volume
    from cranialkit.jobs import atomic_write_text
    from cranialkit.volume import Volume

    mask = Volume(np.ones((4, 4, 4), bool), spacing=(1.0, 1.0, 1.0))
    for umask, expected in ((0o022, 0o644), (0o002, 0o664)):
        old = os.umask(umask)
        try:
            folder = tmp_path / f"u{umask:o}"
            written = [write_volume(mask, folder / "a.nrrd"), write_volume(mask, folder / "a.nii.gz"),
                       write_volume(mask, folder / "b.nhdr"), folder / "b.raw.gz",
                       atomic_write_text(folder / "notes.json", "{}"), atomic_torch_save({}, folder / "c.pt")]
            phantoms = make_phantom_dataset(folder / "ph", n_subjects=1, shape=(16, 16, 16), classes=("skullfix",))
            written += [p for p in phantoms.rglob("*") if p.is_file()]
        finally:
            os.umask(old)
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in written} == {p.name: expected for p in written}
        assert stat.S_IMODE((phantoms / "implant").stat().st_mode) == 0o777 & ~umask
    # a detached header keeps the name of its data file (not the temporary one it was written under)
    header = (tmp_path / "u22" / "b.nhdr").read_text(errors="replace")
    assert "data file: b.raw.gz" in header
    assert sorted(p.name for p in (tmp_path / "u22").iterdir()) == ["a.nii.gz", "a.nrrd", "b.nhdr", "b.raw.gz",
                                                                      "c.pt", "notes.json", "ph"]
    assert read_mask(tmp_path / "u22" / "b.nhdr").array.all()


def test_claim_output_refuses_other_inputs_and_starts_over_on_request(tmp_path):
    out = tmp_path / "out"
    identity = {"job": "evaluate", "checkpoint": "aaa", "settings": {"flip": True, "split": "test"}}
    assert claim_output(out, identity) == out
    (out / "manifest.jsonl").write_text('{"key": "a"}\n')
    claim_output(out, identity)  # same inputs: resume
    assert (out / "manifest.jsonl").exists()
    (out / IDENTITY_FILE).write_text(json.dumps(identity))  # the same identity written another way: still resumes
    assert claim_output(out, identity) == out and (out / "manifest.jsonl").exists()
    changed = {**identity, "checkpoint": "bbb", "settings": {"flip": False, "split": "test"}}
    with pytest.raises(OutputMismatchError, match=r"checkpoint: aaa → bbb; settings.flip: true → false\); start over "
                                                  r"with --overwrite"):
        claim_output(out, changed)
    claim_output(out, changed, overwrite=True)
    assert not (out / "manifest.jsonl").exists()
    assert json.loads((out / IDENTITY_FILE).read_text())["checkpoint"] == "bbb"
    stranger = tmp_path / "papers"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("precious")
    for overwrite in (False, True):  # never emptied: nothing in it says cranialkit made it
        with pytest.raises(OutputMismatchError, match="papers: not empty and has no identity.json"):
            claim_output(stranger, identity, overwrite=overwrite)
    assert (stranger / "thesis.tex").read_text() == "precious"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputMismatchError, match="is a file"):
        claim_output(tmp_path / "file", identity)


def test_concurrent_workers_do_each_item_once(tmp_path):
    """Two workers sharing one folder (threads here; flock claims work the same across processes): every item is
    done exactly once, both workers take part, and a worker that finds an item taken waits for it at the end."""
    manifests = [Manifest(tmp_path / "manifest.jsonl") for _ in range(2)]
    done: list[tuple[str, int]] = []
    start = threading.Barrier(2)

    def worker(index: int) -> None:
        start.wait()
        for item in unfinished([f"case{i}" for i in range(8)], str, manifests[index], tmp_path):
            time.sleep(0.05)
            done.append((item, index))
            manifests[index].add({"key": item})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    items = [item for item, _ in done]
    assert sorted(items) == sorted(f"case{i}" for i in range(8)) and len(set(items)) == 8
    assert {worker for _, worker in done} == {0, 1}
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["key"] for line in lines) == sorted(items)


def test_exclusive_run_refuses_a_second_holder(tmp_path):
    with exclusive_run(tmp_path, "train", "a training"):
        with pytest.raises(OutputMismatchError, match="another process is running a training"):
            with exclusive_run(tmp_path, "train", "a training"):
                pass
    with exclusive_run(tmp_path, "train", "a training"):  # released when the first run ended
        pass


def test_manifest_line_after_a_cut_off_line_is_kept(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b", "val')  # a crash while appending "b"
    manifest = Manifest(path)
    assert "a" in manifest and "b" not in manifest
    manifest.add({"key": "c"})
    assert [r["key"] for r in Manifest(path).records()] == ["a", "c"]


def test_an_unwritable_folder_is_named_not_the_temporary_file(tmp_path, monkeypatch):
    """Whoever runs the test (root may write anywhere), the error of a folder that refuses the temporary file names
    the file the user asked for."""
    import errno
    import tempfile

    def refuse(dir=None, prefix="", suffix=""):
        raise PermissionError(errno.EACCES, "Permission denied", str(Path(dir) / f"{prefix}x{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as error:
        atomic_write_text(tmp_path / "metrics.csv", "a,b\n")
    assert error.value.filename == str(tmp_path / "metrics.csv")
    from cranialkit.cli import describe_error

    assert describe_error(error.value) == (1, f"{tmp_path / 'metrics.csv'}: Permission denied; check its permissions "
                                              f"or choose another path")


def test_identity_of_sees_the_weights_of_nested_stages():
    """A reconstructor's identity covers every network it holds (a second stage too), not the device."""
    from cranialkit.jobs import identity_of

    class Stage:
        def __init__(self, seed: int):
            torch.manual_seed(seed)
            self.model = torch.nn.Linear(3, 2)
            self.spacing_mm = 1.0
            self.device = torch.device("cpu")

    class Pipeline:
        def __init__(self, seed: int, device: str = "cpu"):
            self.first, self.fine, self.threshold, self.device, self._calls = Stage(0), Stage(seed), 0.5, device, 0

    a, b = identity_of(Pipeline(1)), identity_of(Pipeline(2))
    assert a["fine"]["model"]["weights"] != b["fine"]["model"]["weights"]
    assert a["first"] == b["first"] and a["threshold"] == 0.5 and "device" not in a and "_calls" not in a
    assert identity_of(Pipeline(1, device="cuda")) == a
