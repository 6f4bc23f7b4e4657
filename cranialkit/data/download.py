"""Download and unpack the real datasets (SkullBreak, SkullFix, MUG500+) into the data directory, safely.

Taught in notebook 01_data_and_preprocessing (the data section); run as ``cranialkit download <name>`` or
``python data_scripts/download.py <name>``.

Every step can be interrupted and rerun:

- downloads go to ``<file>.part`` and resume with an HTTP ``Range`` request (a server that ignores it restarts);
- the archive is checked (``zipfile.testzip`` + a checksum when one is known) before anything is unpacked; a
  corrupt archive is deleted with a message, so the next run fetches it again;
- unpacking goes to a temporary folder; the dataset folder is located inside it, loaded with
  :func:`cranialkit.data.datasets.load_dataset` (which names whatever is missing), counted, and only then moved to
  ``data_dir()/<name>`` together with a ``download.json`` record.

Sources (all CC BY-NC-SA 4.0 or similar: for research and teaching, never redistributed by cranialkit):

- SkullBreak training set: ``skullbreak_training.zip`` on the first author's university page (verified as the
  address the dataset paper and later work use). The MD5 below is the one a third-party report lists for this
  file name; it is *not verified* here, so a mismatch is only a warning.
- SkullFix (AutoImplant 2020): the share link on files.icg.tugraz.at used by later work (e.g. pcdiff-implant); it
  holds ``training_set.zip`` (and test data) inside. Not verified from here: unreachable links give a plain error.
- MUG500+: figshare article 9616319, listed through figshare's public API (``/v2/articles/<id>/files``, which
  gives each file's MD5). The inner layout of its archives is not verified; :func:`organise_mug500` sorts the NRRD
  files it finds into the layout that :mod:`cranialkit.data.datasets` documents.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cranialkit.config import data_dir
from cranialkit.data.datasets import MUG500_CLASS, Dataset, DatasetLayoutError, detect_layout, load_dataset
from cranialkit.errors import CranialkitError
from cranialkit.jobs import atomic_write_text, make_readable

CHUNK_BYTES = 1 << 20
RECORD_NAME = "download.json"


class DownloadError(CranialkitError, RuntimeError):
    """A download or unpack step that failed; the message says what to do."""


@dataclass(frozen=True)
class Archive:
    """One file to fetch: where from, what to call it, and how to check it."""

    url: str
    filename: str
    checksum: tuple[str, str] | None = None  # (hashlib algorithm, hex digest)
    checksum_verified: bool = False  # False: a mismatch only warns (the digest comes from a secondary source)


@dataclass(frozen=True)
class DatasetSource:
    """A dataset: its archives, its layout after unpacking, and the minimum counts that prove it is complete."""

    name: str
    layout: str
    archives: tuple[Archive, ...] = ()
    min_subjects: int = 1
    min_classes: int = 1
    figshare_article: int | None = None
    notes: str = ""
    expected_classes: tuple[str, ...] = field(default_factory=tuple)


SOURCES: dict[str, DatasetSource] = {
    "skullbreak": DatasetSource(
        "skullbreak", "skullbreak",
        (Archive("https://www.fit.vutbr.cz/~ikodym/skullbreak_training.zip", "skullbreak_training.zip",
                 ("md5", "1389265482e37ec2e403ea57649e8afb"), checksum_verified=False),),
        min_subjects=114, min_classes=5,
        expected_classes=("bilateral", "frontoorbital", "parietotemporal", "random_1", "random_2"),
        notes="SkullBreak training set, 114 skulls × 5 defect classes (Kodym et al. 2021), CC BY-NC-SA 4.0",
    ),
    "skullfix": DatasetSource(
        "skullfix", "skullfix",
        # URL not verified from here (used by later work, e.g. pcdiff-implant's README).
        (Archive("https://files.icg.tugraz.at/f/2c5f458e781a42c6a916/?dl=1", "skullfix.zip"),),
        min_subjects=100,
        notes="SkullFix / AutoImplant 2020: 100 training triplets (Kodym, Li et al. 2021), CC BY-NC-SA 4.0",
    ),
    "mug500": DatasetSource(
        "mug500", "mug500", figshare_article=9616319, min_subjects=1,
        notes="MUG500+ (Li et al. 2021): 500 healthy skulls + 29 craniotomy skulls with implants, figshare 9616319",
    ),
}


# --------------------------------------------------------------------------------------------- fetching


def _host(url: str) -> str:
    return urllib.parse.urlparse(url).netloc or url


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "cranialkit-download/1"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # range not satisfiable: the .part file is already complete
            return None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {_host(url)}: no network? ({reason})") from exc


def fetch(url: str, target: str | os.PathLike, timeout: float = 60.0,
          progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download ``url`` to ``target``, resuming from ``target.part`` when an earlier run was interrupted.

    Returns ``target``. An existing ``target`` is kept as is (delete it to fetch again).
    """
    target = Path(target)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if urllib.parse.urlparse(url).scheme == "file":
        source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        if not source.is_file():
            raise DownloadError(f"{url}: no such file")
        response, total, resumed = open(source, "rb"), source.stat().st_size, True
        response.seek(offset)
    else:
        response = _open(url, offset, timeout)
        if response is None:
            os.replace(part, target)
            return target
        resumed = response.status == 206
        length = response.headers.get("Content-Length")
        total = int(length) + (offset if resumed else 0) if length is not None else None
    if not resumed:
        offset = 0  # the server ignored Range: start again
    done = offset
    with response, open(part, "ab" if resumed else "wb") as fh:
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(f"{url}: connection lost after {done} bytes ({exc}); run again to resume") from exc
            if not chunk:
                break
            fh.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    if total is not None and done < total:
        raise DownloadError(f"{url}: download stopped at {done} of {total} bytes; run again to resume")
    os.replace(part, target)
    return target


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file, read in chunks (archives are many GB)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_archive(path: str | os.PathLike, checksum: tuple[str, str] | None = None,
                   checksum_verified: bool = True) -> None:
    """Check a zip archive: readable, every member's CRC right, and (when known) its checksum.

    A corrupt archive is deleted (so that the next run downloads it again) and :class:`DownloadError` raised.
    """
    path = Path(path)
    problem = None
    if checksum is not None:
        algorithm, expected = checksum
        actual = file_digest(path, algorithm)
        if actual.lower() != expected.lower():
            message = f"{path}: {algorithm} is {actual}, expected {expected}"
            if checksum_verified:
                problem = message
            else:
                warnings.warn(message + " (the expected value is not verified; continuing)", stacklevel=2)
    if problem is None:
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                problem = f"{path}: corrupt archive (member {bad} fails its CRC check)"
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:  # zlib: a broken deflate stream
            problem = f"{path}: corrupt or incomplete zip archive ({exc})"
    if problem is not None:
        path.unlink(missing_ok=True)
        raise DownloadError(problem + "; it was deleted, run the download again")


def unpack(archive: str | os.PathLike, destination: str | os.PathLike, nested: bool = True) -> Path:
    """Extract a zip archive into ``destination`` (refusing members that would land outside it); with ``nested``,
    zip files found inside are extracted in place too (SkullFix ships ``training_set.zip`` inside its archive)."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            if not (destination / member).resolve().is_relative_to(destination.resolve()):
                raise DownloadError(f"{archive}: member {member!r} would be written outside {destination}")
        zf.extractall(destination)
    for _ in range(3 if nested else 0):  # archives inside archives, up to three levels
        inner_archives = sorted(destination.rglob("*.zip"))
        if not inner_archives:
            break
        for inner in inner_archives:
            verify_archive(inner)
            unpack(inner, inner.parent, nested=False)
            inner.unlink()
    return destination


# --------------------------------------------------------------------------------------------- layout checks


def find_dataset_root(folder: str | os.PathLike, layout: str, max_depth: int = 3) -> Path:
    """The folder at or below ``folder`` (breadth first, up to ``max_depth`` levels) that holds ``layout``."""
    folder = Path(folder)
    level = [folder]
    for _ in range(max_depth + 1):
        for candidate in level:
            try:
                if detect_layout(candidate) == layout:
                    return candidate
            except DatasetLayoutError:
                pass
        level = [p for c in level for p in sorted(c.iterdir()) if p.is_dir() and not p.name.startswith(("_", "."))]
    raise DatasetLayoutError(f"{folder}: no {layout} dataset found in the unpacked files (looked {max_depth} "
                             f"folders deep); the archive does not have the expected layout")


def verify_layout(root: str | os.PathLike, source: DatasetSource) -> Dataset:
    """Load the unpacked dataset (errors name what is missing) and check it is complete enough to be the real one."""
    dataset = load_dataset(root, layout=source.layout, check_headers=False)
    problems = []
    if len(dataset.subjects()) < source.min_subjects:
        problems.append(f"{len(dataset.subjects())} subjects, expected at least {source.min_subjects}")
    missing = sorted(set(source.expected_classes) - set(dataset.classes()))
    if missing:
        problems.append(f"defect classes {missing} missing")
    elif len(dataset.classes()) < source.min_classes:
        problems.append(f"{len(dataset.classes())} defect classes, expected at least {source.min_classes}")
    if problems:
        raise DatasetLayoutError(f"{root}: incomplete {source.name} dataset: " + "; ".join(problems))
    return dataset


_MUG_ID = re.compile(r"([A-Za-z]*\d+)")


def organise_mug500(unpacked: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Sort the NRRD files of unpacked MUG500+ archives into ``complete_skull/<id>.nrrd`` (healthy skulls),
    ``defective_skull/craniotomy/<id>.nrrd`` and ``implant/craniotomy/<id>.nrrd``.

    The figshare archives' inner layout is not verified here, so files are classified by path words: "implant" →
    implant; "craniotomy"/"defect" → defective skull; anything else → healthy skull. The id is the first
    letters+digits token of the file name (e.g. ``A0001``). Craniotomy skulls without an implant are an error.
    """
    unpacked, destination = Path(unpacked), Path(destination)
    defective, implants = {}, {}
    for path in sorted(unpacked.rglob("*.nrrd")):
        words = str(path.relative_to(unpacked)).lower()
        match = _MUG_ID.search(path.stem)
        case_id = match.group(1) if match else path.stem
        if "implant" in words:
            implants[case_id] = path
            target = destination / "implant" / MUG500_CLASS / f"{case_id}.nrrd"
        elif "craniotomy" in words or "defect" in words:
            defective[case_id] = path
            target = destination / "defective_skull" / MUG500_CLASS / f"{case_id}.nrrd"
        else:
            target = destination / "complete_skull" / f"{case_id}.nrrd"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    lacking = sorted(set(defective) - set(implants))
    if lacking:
        raise DatasetLayoutError(f"{unpacked}: MUG500+ craniotomy skulls without an implant: {lacking[:10]}")
    return destination


def _figshare_archives(article: int, timeout: float) -> tuple[Archive, ...]:
    url = f"https://api.figshare.com/v2/articles/{article}/files?page_size=1000"
    response = _open(url, 0, timeout)
    with response:
        files = json.loads(response.read().decode())
    return tuple(
        Archive(f["download_url"], f["name"], ("md5", f["computed_md5"]) if f.get("computed_md5") else None, True)
        for f in files
        if f["name"].lower().endswith(".zip")
    )


# --------------------------------------------------------------------------------------------- the whole job


def download_dataset(name: str, root: str | os.PathLike | None = None, timeout: float = 60.0,
                     sources: dict[str, DatasetSource] | None = None, quiet: bool = False) -> Path:
    """Download, verify and unpack dataset ``name`` into ``root/<name>`` (default root: ``data_dir()``).

    Rerunning resumes: finished archives are not fetched again, a finished dataset is returned at once.
    """
    sources = SOURCES if sources is None else sources
    if name not in sources:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(sources)}")
    source = sources[name]
    root = Path(root) if root is not None else data_dir()
    final = root / name
    if (final / RECORD_NAME).is_file():
        return final
    archives = source.archives or _figshare_archives(source.figshare_article, timeout)
    downloads = root / "downloads" / name

    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    def show(done: int, total: int | None) -> None:
        if not quiet:
            print(f"\r  {done / 1e6:,.0f} / {total / 1e6:,.0f} MB" if total else f"\r  {done / 1e6:,.0f} MB",
                  end="", flush=True)

    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-unpack-", dir=root))
    make_readable(staging)  # it may become the dataset folder: as readable as any folder the user makes (not 0700)
    paths = [downloads / archive.filename for archive in archives]
    try:
        for archive, path in zip(archives, paths):
            say(f"{name}: {archive.filename} from {_host(archive.url)}")
            fetch(archive.url, path, timeout=timeout, progress=show)
            say("")
            verify_archive(path, archive.checksum, archive.checksum_verified)
            unpack(path, staging)
        try:
            if source.layout == "mug500":
                dataset_root = organise_mug500(staging, staging / "mug500")
            else:
                dataset_root = find_dataset_root(staging, source.layout)
            dataset = verify_layout(dataset_root, source)
        except DatasetLayoutError as exc:
            # The unpacked folder is deleted below, so name the archives; delete them too, so that the next run
            # downloads them again instead of failing on the same files.
            problem = str(exc).replace(str(staging), "the unpacked archive").replace("\n", " ")
            for path in paths:
                path.unlink(missing_ok=True)
            names = ", ".join(str(p) for p in paths)
            raise DatasetLayoutError(f"{names}: not the expected {name} dataset ({problem}); the archive was "
                                     f"deleted — run the download again, or unpack the dataset by hand and point "
                                     f"--data at it") from exc
        if final.exists():
            shutil.rmtree(final)  # an earlier, unfinished attempt (no record file)
        os.replace(dataset_root, final)
        record = {"name": name, "archives": [a.url for a in archives], "summary": dataset.summary(),
                  "notes": source.notes}
        record["summary"]["root"] = str(final)
        atomic_write_text(final / RECORD_NAME, json.dumps(record, indent=2))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"{name}: ready at {final}")
    return final
