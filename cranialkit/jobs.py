"""Safe long jobs: atomic file writes and a resumable manifest.

Dataset generation, registration of many pairs and training write every result atomically (temporary file in
the same folder, then ``os.replace``) and record it in a JSON-lines manifest, so an interrupted run resumes
without recomputing or losing what was finished.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; results should be readable like any file
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically (a checkpoint is either the old one or the new one, never half of one)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_weights(model, weights: dict, path: str | os.PathLike,
                 advice: str = "retrain, or train into a new run folder") -> None:
    """``model.load_state_dict(weights)`` with an error that names the checkpoint when the layers do not fit (for
    example a checkpoint written before a network's layers changed); ``advice`` says what to do about it."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise ValueError(f"{path}: the saved weights do not fit this version's network ({first}); {advice}") from exc


class Manifest:
    """A JSON-lines file of finished work items, each a dict with a unique ``key``.

    ``add`` appends one line and flushes it to disk (fsync), so after a crash the manifest lists exactly the
    items whose outputs were completely written (write outputs first, then ``add``).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._records: dict[str, dict] = {}
        if self.path.exists():
            for line_no, line in enumerate(self.path.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    # A line cut off by a crash while appending: everything before it is intact.
                    continue
                if "key" not in record:
                    raise ValueError(f"{self.path}:{line_no}: manifest record without 'key'")
                self._records[str(record["key"])] = record

    def __contains__(self, key: object) -> bool:
        return str(key) in self._records

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> list[dict]:
        """All finished records, in the order they were first added."""
        return list(self._records.values())

    def add(self, record: dict) -> None:
        """Record a finished item (its outputs must already be on disk)."""
        if "key" not in record:
            raise ValueError("a manifest record needs a 'key'")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._records[str(record["key"])] = record
