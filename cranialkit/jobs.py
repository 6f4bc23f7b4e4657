"""Safe long jobs: atomic file writes, a resumable manifest, the identity of an output folder, and work claims.

Dataset generation, registration of many pairs, evaluation and training write every result atomically (temporary
file in the same folder, then ``os.replace``) and record it in a JSON-lines manifest, so an interrupted run resumes
without recomputing or losing what was finished.

A resumable output folder also records what made it (:func:`claim_output`: ``identity.json`` with the checkpoint's
hash, the data and its files, the settings that change the result): a rerun with other inputs is refused, naming
the difference, instead of mixing two jobs' results in one folder. Several processes may share one folder:
:class:`WorkClaims` lets each item be done by exactly one of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cranialkit.errors import OutputMismatchError

IDENTITY_FILE = "identity.json"
CLAIMS_FOLDER = ".claims"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_readable(path: str | os.PathLike) -> None:
    """Give a file (folder) the permissions the user's umask allows, ``0644`` (``0755``) for the usual ``022``:
    temporary files and folders start private (``0600``, ``0700``), and a data folder shared by a class must be
    readable by everyone in it."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_umask())


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path`` (with the permissions the umask
    allows), on error removed. ``suffix`` ends the temporary name (writers that pick a format by extension need it).

    An output folder that cannot be made or written raises ``OSError`` naming ``path``, not the temporary file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        make_readable(tmp_path)
        try:
            os.replace(tmp_path, path)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
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
    from cranialkit.errors import CheckpointError

    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise CheckpointError(f"{path}: the saved weights do not fit this version's network ({first}); "
                              f"{advice}") from exc


# --------------------------------------------------------------------------------------------- identity


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (read in 1 MB chunks): the identity of a checkpoint, whatever its name."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_signature(root: str | os.PathLike, paths: Iterable[str | os.PathLike]) -> dict:
    """What a set of input files is, cheaply: their number and a digest of (path under ``root``, size, modification
    time). Any changed, added or removed file changes the digest (so does a copy that does not keep times)."""
    root = Path(root).resolve()
    entries = []
    for path in sorted({Path(p).resolve() for p in paths}):
        stat = path.stat()
        name = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        entries.append([name, stat.st_size, stat.st_mtime_ns])
    digest = hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]
    return {"files": len(entries), "digest": digest}


def claim_output(folder: str | os.PathLike, identity: dict, overwrite: bool = False,
                 known: tuple[str, ...] = ("manifest*.jsonl",)) -> Path:
    """Make ``folder`` the output of the job described by ``identity`` (plain JSON data) and return it.

    A new or empty folder gets ``identity.json``; a folder whose ``identity.json`` matches is resumed; one made with
    another identity raises :class:`~cranialkit.errors.OutputMismatchError` naming what differs — unless
    ``overwrite``, which empties it and starts over. A non-empty folder without ``identity.json`` is refused
    (emptied with ``overwrite`` only when it holds files matching ``known``, i.e. was made by the same kind of job:
    never a folder of other files).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputMismatchError(f"{folder}: is a file; give a folder for the output")
    identity = json.loads(json.dumps(identity))  # tuples -> lists, as they read back from the file
    path = folder / IDENTITY_FILE
    existing = read_identity(path)
    contents = [p for p in folder.iterdir() if p.name != CLAIMS_FOLDER] if folder.is_dir() else []
    filled = bool(contents)
    ours = existing is not None or any(any(folder.glob(pattern)) for pattern in known)
    if filled and overwrite and ours:
        for child in contents:  # not the claims: another process may hold one
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        existing = None
    elif filled and existing is None:
        raise OutputMismatchError(
            f"{folder}: not empty and has no {IDENTITY_FILE} saying what made its files; "
            + ("start over with --overwrite or choose a new folder" if ours else "choose a new or empty folder"))
    elif existing is not None and existing != identity:
        raise OutputMismatchError(f"{folder}: holds results made from other inputs or settings "
                                  f"({describe_differences(existing, identity)}); start over with --overwrite or "
                                  f"choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    if existing is None and not _create_once(path, json.dumps(identity, indent=2, sort_keys=True) + "\n"):
        # Another process created it at the same moment with another identity.
        return claim_output(folder, identity, overwrite=False, known=known)
    return folder


def read_identity(path: Path) -> dict | None:
    """The identity in ``path`` (an output folder's ``identity.json``), or None when there is none; an unreadable
    file raises :class:`~cranialkit.errors.OutputMismatchError`."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OutputMismatchError(f"{path}: unreadable ({exc}); start over with --overwrite or choose another "
                                  f"folder") from exc


def _create_once(path: Path, text: str) -> bool:
    """Write ``path`` only if it does not exist, atomically (hard link of a complete temporary file); returns
    whether this call created it (True also when it exists with exactly this text)."""
    if path.is_file():
        return path.read_text() == text
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        make_readable(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_text() == text
        except OSError:  # a file system without hard links
            os.replace(tmp, path)
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def describe_differences(old: dict, new: dict, prefix: str = "") -> str:
    """The keys whose values differ between two identities, as ``key: old → new`` (nested keys joined by dots)."""
    parts = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "(none)"), new.get(key, "(none)")
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            parts.append(describe_differences(a, b, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}: {_short(a)} → {_short(b)}")
    return "; ".join(parts)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 48 else text[:20] + "…" + text[-20:]


class Manifest:
    """A JSON-lines file of finished work items, each a dict with a unique ``key``.

    ``add`` appends one line and flushes it to disk (fsync), so after a crash the manifest lists exactly the
    items whose outputs were completely written (write outputs first, then ``add``).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.refresh()

    def refresh(self) -> None:
        """(Re)read the file: records that other processes appended since are seen too."""
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
        with open(self.path, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            line = (json.dumps(record, sort_keys=True) + "\n").encode()
            if fh.tell():
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # a line cut off by a crash: start a new one, keep this record whole
                    line = b"\n" + line
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self._records[str(record["key"])] = record


# --------------------------------------------------------------------------------------------- work claims


class WorkClaims:
    """Exclusive claims on the work items of one output folder, shared by any number of processes.

    A claim is an advisory lock (``fcntl.flock``) on ``<folder>/.claims/<item>.lock``. The operating system drops
    it when its process ends, by kill -9 too, so a crashed run never blocks an item. Where ``flock`` does not exist
    (Windows) every claim succeeds: one process per folder there.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder) / CLAIMS_FOLDER

    @contextmanager
    def hold(self, key: str, wait: bool = False) -> Iterator[bool]:
        """Claim ``key`` for the duration of the ``with`` block; yields False when another process holds it (with
        ``wait``, block until it is released and then yield True)."""
        try:
            import fcntl
        except ImportError:
            yield True
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in key) + ".lock"
        with open(self.folder / name, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def unfinished(items: Iterable, key: Callable[[Any], str], manifest: Manifest | None,
               folder: str | os.PathLike | None = None, done: Callable[[Any], bool] | None = None) -> Iterator:
    """The items not finished yet, each yielded while this process holds its claim (:class:`WorkClaims` on
    ``folder``, default the manifest's folder, under the name ``key(item)``).

    An item is finished when ``done(item)`` is true (default: ``key(item)`` is in ``manifest``); the manifest is
    re-read before each check, so records that other processes added count. The caller does the item and adds its
    record(s) to ``manifest`` before asking for the next. Items another process sharing the folder is doing are
    skipped, then waited for at the end: if that process finished them they are done, else (it died) they are
    yielded here. Without a manifest every item is yielded.
    """
    if manifest is None:
        yield from items
        return
    finished = done if done is not None else (lambda item: key(item) in manifest)
    claims = WorkClaims(folder if folder is not None else manifest.path.parent)
    deferred = []
    for item in items:
        if finished(item):
            continue
        with claims.hold(key(item)) as mine:
            if not mine:
                deferred.append(item)
                continue
            manifest.refresh()
            if not finished(item):
                yield item
    for item in deferred:
        with claims.hold(key(item), wait=True):
            manifest.refresh()
            if not finished(item):
                yield item


@contextmanager
def exclusive_run(folder: str | os.PathLike, job: str, what: str) -> Iterator[None]:
    """Hold the claim ``job`` on ``folder`` for a whole run; a second process running the same job there is refused
    (:class:`~cranialkit.errors.OutputMismatchError` saying ``what`` is busy) instead of writing the same files."""
    with WorkClaims(folder).hold(job) as mine:
        if not mine:
            raise OutputMismatchError(f"{folder}: another process is running {what} in this folder; wait for it to "
                                      f"finish or choose another folder")
        yield


def identity_of(obj: Any, skip: tuple[str, ...] = ("device",)) -> dict:
    """The settings and weights of an object that makes results (a ``Reconstructor`` with its stages, a
    ``Generator``) as plain data for :func:`claim_output`: numbers, strings, sequences and dataclasses as they are,
    networks as a digest of their weights (:func:`cranialkit.checkpoints.weights_digest`), other objects by their
    public attributes (a few levels deep); attributes named in ``skip`` and private ones are left out."""
    from dataclasses import asdict, is_dataclass

    from cranialkit.checkpoints import weights_digest

    def plain(value: Any, depth: int) -> Any:
        if hasattr(value, "state_dict") and hasattr(value, "parameters"):  # a network
            config = getattr(value, "config", None)
            return {"weights": weights_digest(value), **({"config": plain(config, depth)} if isinstance(config, dict)
                                                        else {})}
        if is_dataclass(value) and not isinstance(value, type):
            return plain(asdict(value), depth)
        if isinstance(value, dict):
            return {str(k): plain(v, depth) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v, depth) for v in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if hasattr(value, "__dict__") and depth < 3:
            return {"class": type(value).__name__, **{k: plain(v, depth + 1) for k, v in vars(value).items()
                                                       if not k.startswith("_") and k not in skip}}
        return type(value).__name__

    identity = plain(obj, 0)
    return identity if isinstance(identity, dict) and "class" in identity else {"class": type(obj).__name__,
                                                                                 **identity}
