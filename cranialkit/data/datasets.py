"""Dataset layouts (SkullBreak, SkullFix, MUG500+, phantom) → one list of cases with reproducible splits.

Taught in notebook 01_data_and_preprocessing.

A *case* is one defective skull of one subject with its implant and (when known) its complete skull. All four
layouts load into the same :class:`Dataset`, so that notebooks and training code never care where data came from.

Layouts on disk (``NNN`` = subject id, ``<class>`` = defect class):

- ``skullbreak`` (Kodym et al. 2021): ``complete_skull/NNN.nrrd``, ``defective_skull/<class>/NNN.nrrd``,
  ``implant/<class>/NNN.nrrd``. A test split may hold defective skulls only (no implant, no complete skull).
- ``phantom``: the SkullBreak layout written by :func:`cranialkit.data.phantom.make_phantom_dataset`, plus a
  ``phantom.json`` describing how it was made.
- ``skullfix`` (AutoImplant 2020): ``training_set/{complete_skull,defective_skull,implant}/NNN.nrrd`` and optional
  ``test_set_for_participants/NNN.nrrd`` (defective skulls without ground truth); one defect class, "skullfix".
  A folder that directly holds ``complete_skull/ defective_skull/ implant/`` with flat ``NNN.nrrd`` files is read the
  same way.
- ``mug500`` (MUG500+, Li et al. 2021, figshare 9616319): 500 healthy skulls and 29 craniotomy skulls with
  expert-designed implants. figshare ships them as many zip archives whose inner layout we could not verify from
  here (only the published descriptor: NRRD + STL per case); ``data_scripts/download.py mug500`` therefore sorts the
  unpacked NRRD files into this normalised layout, which is what the loader reads: ``complete_skull/<id>.nrrd``
  (healthy skulls, kept in :attr:`Dataset.healthy`), ``defective_skull/craniotomy/<id>.nrrd`` and
  ``implant/craniotomy/<id>.nrrd`` (the cases; no complete skull exists for them).
"""

from __future__ import annotations

import filecmp
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cranialkit.config import data_dir
from cranialkit.errors import CranialkitError, GeometryError
from cranialkit.io import read_grid, read_mask
from cranialkit.jobs import atomic_write_text
from cranialkit.volume import Volume

LAYOUTS = ("skullbreak", "skullfix", "mug500", "phantom")
SKULLFIX_CLASS = "skullfix"
MUG500_CLASS = "craniotomy"
PHANTOM_MARKER = "phantom.json"
_VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii.gz", ".nii")


# An implant may touch the defective skull along the defect's rim where it was drawn as a mesh and voxelised
# (MUG500+); beyond this fraction of its voxels, the two files are not an implant and its skull.
MAX_IMPLANT_OVERLAP = 0.01


class DatasetLayoutError(CranialkitError):
    """A dataset folder whose layout is unknown or incomplete; the message says what is missing."""


def _stem(path: Path) -> str:
    """File name without its volume suffix (``003.nii.gz`` → ``003``)."""
    name = path.name
    for suffix in _VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _volume_files(folder: Path) -> dict[str, Path]:
    """Volume files directly inside ``folder``, keyed by case id (file name without suffix)."""
    if not folder.is_dir():
        return {}
    files = {}
    for path in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if path.is_file() and path.name.lower().endswith(_VOLUME_SUFFIXES) and not path.name.startswith("."):
            files[_stem(path)] = path
    return files


@dataclass(frozen=True)
class Case:
    """One defective skull of one subject, with its implant and complete skull when they exist.

    The volume properties read the files on each access (bool :class:`Volume`, geometry in mm), so a
    :class:`Dataset` of hundreds of 512³ cases costs no memory until used. ``implant`` falls back to
    ``complete AND NOT defective`` when only the complete skull is on disk.
    """

    case_id: str
    defect_class: str
    defective_path: Path
    implant_path: Path | None = None
    complete_path: Path | None = None

    @property
    def key(self) -> str:
        """Unique name of the case in its dataset: ``"<defect_class>/<case_id>"``."""
        return f"{self.defect_class}/{self.case_id}"

    @property
    def defective(self) -> Volume:
        """The defective skull (bool Volume)."""
        return read_mask(self.defective_path)

    @property
    def complete(self) -> Volume | None:
        """The complete skull (bool Volume), or None when the dataset has none for this case."""
        return read_mask(self.complete_path) if self.complete_path is not None else None

    @property
    def implant(self) -> Volume | None:
        """The implant (bool Volume); derived from the complete skull when no implant file exists; else None."""
        if self.implant_path is not None:
            return read_mask(self.implant_path)
        if self.complete_path is not None:
            defective = self.defective
            complete = read_mask(self.complete_path)
            check_case_volumes(self, defective, complete=complete)
            return complete.with_array(complete.array & ~defective.array)
        return None

    @property
    def has_ground_truth(self) -> bool:
        """Whether an implant (file or derivable from a complete skull) exists."""
        return self.implant_path is not None or self.complete_path is not None

    def paths(self) -> list[Path]:
        """All files of the case that exist."""
        return [p for p in (self.defective_path, self.implant_path, self.complete_path) if p is not None]


def check_case_volumes(case: Case, defective: Volume, implant: Volume | None = None,
                       complete: Volume | None = None) -> None:
    """Raise :class:`~cranialkit.errors.GeometryError` naming the files when the volumes of ``case`` (as read) do
    not share one grid (shape, spacing, origin, direction), when the implant overlaps the defective skull (more than
    :data:`MAX_IMPLANT_OVERLAP` of its voxels), or when the complete skull does not contain the defective skull.

    Call it wherever a case's volumes are read together (evaluation, preprocessing, augmentation): scoring or
    training on two grids, or on an "implant" that is the skull itself, gives numbers without meaning.
    """
    for volume, path, name in ((implant, case.implant_path, "implant"), (complete, case.complete_path, "complete")):
        if volume is None:
            continue
        difference = defective.grid.difference(volume.grid)
        if difference:
            raise GeometryError(f"{case.defective_path} and {path}: the defective skull and the {name} skull of "
                                f"case {case.key} lie on different grids ({difference}); resample one onto the "
                                f"other's grid")
    if implant is not None:
        overlap = int(np.count_nonzero(implant.array & defective.array))
        size = int(np.count_nonzero(implant.array))
        if overlap > MAX_IMPLANT_OVERLAP * max(size, 1):
            raise GeometryError(f"{case.implant_path}: the implant of case {case.key} overlaps its defective skull "
                                f"{case.defective_path} in {overlap} of its {size} voxels ({100 * overlap / size:.0f} "
                                f"%); an implant fills the defect only — check that the files are not swapped or "
                                f"the same")
    if complete is not None:
        missing = int(np.count_nonzero(defective.array & ~complete.array))
        if missing > MAX_IMPLANT_OVERLAP * max(int(np.count_nonzero(defective.array)), 1):
            raise GeometryError(f"{case.complete_path}: the complete skull of case {case.key} lacks {missing} voxels "
                                f"of its defective skull {case.defective_path}; check that the files belong together")


@dataclass
class Dataset:
    """Cases of one dataset folder, in a fixed order (defect class, then subject id)."""

    root: Path
    layout: str
    cases: list[Case]
    healthy: list[Path] = field(default_factory=list)  # MUG500+ complete skulls without a defect

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> Case:
        return self.cases[index]

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    def subjects(self) -> list[str]:
        """Sorted subject ids (several defect classes of one subject share its id)."""
        return sorted({case.case_id for case in self.cases})

    def classes(self) -> list[str]:
        """Sorted defect classes present."""
        return sorted({case.defect_class for case in self.cases})

    def subset(self, subjects: Sequence[str] | None = None, classes: Sequence[str] | None = None) -> Dataset:
        """The cases of the given subjects and/or defect classes (same root and layout)."""
        keep_subjects = None if subjects is None else set(subjects)
        keep_classes = None if classes is None else set(classes)
        cases = [
            c
            for c in self.cases
            if (keep_subjects is None or c.case_id in keep_subjects)
            and (keep_classes is None or c.defect_class in keep_classes)
        ]
        return Dataset(self.root, self.layout, cases)

    def split(self, seed: int = 0, fractions: Sequence[float] = (0.7, 0.15, 0.15)) -> dict[str, Dataset]:
        """Split by subject into "train", "val" and "test" (all defect classes of a subject in one part).

        The subjects are shuffled with ``seed``, so the same seed gives the same split. Every part with a positive
        fraction gets at least one subject when there are enough subjects (≥ 3 for the default fractions).
        """
        fractions = np.asarray(fractions, dtype=float)
        if fractions.shape != (3,) or np.any(fractions < 0) or fractions.sum() <= 0:
            raise ValueError(f"fractions must be three non-negative numbers (train, val, test), got {fractions}")
        fractions = fractions / fractions.sum()
        subjects = self.subjects()
        order = np.random.default_rng(seed).permutation(len(subjects))
        shuffled = [subjects[i] for i in order]
        counts = _part_sizes(len(subjects), fractions)
        parts, start = {}, 0
        for name, count in zip(("train", "val", "test"), counts):
            parts[name] = self.subset(shuffled[start : start + count])
            start += count
        return parts

    def summary(self) -> dict:
        """Counts per defect class, subjects, and whether ground truth exists (cheap: no volume is read)."""
        per_class = {cls: sum(c.defect_class == cls for c in self.cases) for cls in self.classes()}
        return {
            "root": str(self.root),
            "layout": self.layout,
            "cases": len(self.cases),
            "subjects": len(self.subjects()),
            "cases_per_class": per_class,
            "cases_with_ground_truth": sum(c.has_ground_truth for c in self.cases),
            "healthy_skulls": len(self.healthy),
        }

    def __repr__(self) -> str:
        return f"Dataset({self.layout}, {len(self.cases)} cases, {len(self.subjects())} subjects, root={self.root})"


def _part_sizes(n: int, fractions: np.ndarray) -> list[int]:
    """Sizes of the three parts: proportional, but at least one subject for each positive fraction when n allows."""
    sizes = np.floor(fractions * n).astype(int)
    # Hand the remainder to the parts that lost most to rounding down.
    for i in np.argsort(-(fractions * n - sizes))[: n - sizes.sum()]:
        sizes[i] += 1
    for i in range(3):
        if fractions[i] > 0 and sizes[i] == 0:
            donor = int(np.argmax(sizes))
            if sizes[donor] > 1:
                sizes[donor] -= 1
                sizes[i] += 1
    return sizes.tolist()


# --------------------------------------------------------------------------------------------- layout detection


def detect_layout(root: str | os.PathLike) -> str:
    """Which layout ``root`` holds ("skullbreak", "skullfix", "mug500" or "phantom"), from its folders."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: no such dataset folder")
    defective = root / "defective_skull"
    if (root / PHANTOM_MARKER).is_file():
        return "phantom"
    if (root / "training_set").is_dir() or (root / "test_set_for_participants").is_dir():
        return "skullfix"
    if defective.is_dir():
        subfolders = [p.name for p in defective.iterdir() if p.is_dir()]
        if subfolders == [MUG500_CLASS]:
            return "mug500"
        if subfolders:
            return "skullbreak"
        if _volume_files(defective):
            return "skullfix"  # flat SkullFix folder (complete_skull/, defective_skull/, implant/ with NNN.nrrd)
    found = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))[:12]
    raise DatasetLayoutError(
        f"{root}: unknown dataset layout. Expected one of: SkullBreak/phantom (complete_skull/, "
        f"defective_skull/<class>/, implant/<class>/), SkullFix (training_set/{{complete_skull,defective_skull,"
        f"implant}}/), MUG500+ (defective_skull/craniotomy/, implant/craniotomy/). Found: {found or 'an empty folder'}"
    )


def _missing(what: Path, ids: Sequence[str]) -> str:
    shown = ", ".join(sorted(ids)[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
    return f"{what}: missing for cases {shown}"


def _load_class_layout(root: Path, layout: str) -> Dataset:
    """SkullBreak / phantom / MUG500+: defective_skull/<class>/, implant/<class>/, complete_skull/."""
    defective_root = root / "defective_skull"
    if not defective_root.is_dir():
        raise DatasetLayoutError(f"{defective_root}: missing (a {layout} dataset needs defective_skull/<class>/)")
    complete = _volume_files(root / "complete_skull")
    implant_root = root / "implant"
    classes = sorted(p.name for p in defective_root.iterdir() if p.is_dir())
    if not classes:
        raise DatasetLayoutError(f"{defective_root}: no defect class folders (e.g. bilateral/, random_1/)")
    problems, cases = [], []
    for cls in classes:
        defective = _volume_files(defective_root / cls)
        if not defective:
            problems.append(f"{defective_root / cls}: no volume files")
            continue
        implants = _volume_files(implant_root / cls)
        if implant_root.is_dir() or layout == "phantom":
            # When a dataset has implants at all, every defective skull needs one.
            lacking = [i for i in defective if i not in implants]
            if lacking:
                problems.append(_missing(implant_root / cls, lacking))
        if layout == "phantom":
            lacking = [i for i in defective if i not in complete]
            if lacking:
                problems.append(_missing(root / "complete_skull", lacking))
        for case_id, path in defective.items():
            cases.append(Case(case_id, cls, path, implants.get(case_id), complete.get(case_id)))
    if problems:
        raise DatasetLayoutError(f"{root}: incomplete {layout} dataset:\n  " + "\n  ".join(problems))
    healthy = []
    if layout == "mug500":
        cases = [Case(c.case_id, c.defect_class, c.defective_path, c.implant_path, None) for c in cases]
        healthy = list(complete.values())
    return Dataset(root, layout, cases, healthy)


def _load_skullfix(root: Path) -> Dataset:
    """SkullFix: training_set/{complete_skull,defective_skull,implant}/NNN.nrrd + test_set_for_participants/."""
    training = root / "training_set" if (root / "training_set").is_dir() else root
    cases, problems = [], []
    if (training / "defective_skull").is_dir():
        defective = _volume_files(training / "defective_skull")
        implants = _volume_files(training / "implant")
        complete = _volume_files(training / "complete_skull")
        if not defective:
            problems.append(f"{training / 'defective_skull'}: no volume files")
        if not implants and not complete:
            problems.append(f"{training}: neither implant/ nor complete_skull/ holds volume files")
        for folder, files in (("implant", implants), ("complete_skull", complete)):
            lacking = [i for i in defective if i not in files]
            if files and lacking:
                problems.append(_missing(training / folder, lacking))
        for case_id, path in defective.items():
            cases.append(Case(case_id, SKULLFIX_CLASS, path, implants.get(case_id), complete.get(case_id)))
    elif training != root:
        problems.append(f"{training / 'defective_skull'}: missing")
    for case_id, path in _volume_files(root / "test_set_for_participants").items():
        cases.append(Case(f"test_{case_id}", SKULLFIX_CLASS, path))
    if problems:
        raise DatasetLayoutError(f"{root}: incomplete skullfix dataset:\n  " + "\n  ".join(problems))
    if not cases:
        raise DatasetLayoutError(f"{root}: no SkullFix cases (training_set/defective_skull/ is empty)")
    return Dataset(root, "skullfix", cases)


def check_case_headers(case: Case) -> None:
    """Raise :class:`~cranialkit.errors.GeometryError` naming both files when a case's volumes differ in shape,
    spacing, origin or direction, or when its implant file is a copy of its defective skull (reads headers only,
    so it is cheap even for 512³ gzip NRRD; :func:`check_case_volumes` checks the voxels once they are read)."""
    grid = read_grid(case.defective_path)
    for other, name in ((case.implant_path, "implant"), (case.complete_path, "complete skull")):
        if other is None:
            continue
        difference = grid.difference(read_grid(other))
        if difference:
            raise GeometryError(f"{case.defective_path} and {other}: the defective skull and the {name} of case "
                                f"{case.key} lie on different grids ({difference}); resample one onto the other's "
                                f"grid")
    implant = case.implant_path
    if implant is not None and filecmp.cmp(case.defective_path, implant, shallow=False):
        raise GeometryError(f"{implant}: the implant of case {case.key} is a copy of its defective skull "
                            f"{case.defective_path}; an implant fills the defect only — check the files")


def dataset_folder(name_or_path: str | os.PathLike) -> Path:
    """The folder of a dataset given by name or path: a folder that exists, or the name of a dataset that
    ``cranialkit download`` fetched into the data directory (``"skullfix"`` → ``data_dir()/skullfix``)."""
    from cranialkit.data.download import RECORD_NAME, SOURCES

    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if name in SOURCES:
        downloaded = data_dir() / name
        if (downloaded / RECORD_NAME).is_file():
            return downloaded
        raise DatasetLayoutError(f"{name}: not downloaded yet (no {downloaded / RECORD_NAME}); run "
                                 f"`cranialkit download {name}` first, or give the dataset's folder")
    raise DatasetLayoutError(f"{path}: no such dataset folder (and not a dataset name: {', '.join(sorted(SOURCES))})")


def load_dataset(root: str | os.PathLike, layout: str = "auto", check_headers: bool = True) -> Dataset:
    """Load a dataset of any supported layout, given by folder or by the name of a downloaded dataset
    (:func:`dataset_folder`), into a :class:`Dataset`.

    ``layout="auto"`` detects it from the folders. An unknown or incomplete layout raises
    :class:`DatasetLayoutError` saying what is missing; with ``check_headers`` the NRRD/NIfTI headers of every case
    are compared (:func:`check_case_headers`: shape, spacing, origin, direction; an implant that is a copy of its
    skull) so that a mismatched case fails here, naming both files, not deep in training or evaluation.
    """
    root = dataset_folder(root)
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
    dataset = _load_skullfix(root) if layout == "skullfix" else _load_class_layout(root, layout)
    if check_headers:
        for case in dataset.cases:
            check_case_headers(case)
    return dataset


# --------------------------------------------------------------------------------------------- phantoms


def phantom_root(n_subjects: int = 10, resolution: int = 64, seed: int = 0) -> Path:
    """Where :func:`phantom_dataset` keeps a phantom dataset: ``data_dir()/phantoms/<resolution>_<n>_<seed>``."""
    return data_dir() / "phantoms" / f"{resolution}_{n_subjects}_{seed}"


def phantom_dataset(
    n_subjects: int = 10, resolution: int = 64, seed: int = 0, classes: Sequence[str] | None = None
) -> Dataset:
    """Make (once; later calls reuse and resume it) and load a phantom dataset of ``n_subjects`` at ``resolution``³.

    ``classes`` defaults to all phantom defect classes (SkullBreak's five + "skullfix").
    """
    from cranialkit.data import phantom

    if n_subjects < 1 or resolution < 12:  # 12³ over the 240 mm field of view: 20 mm voxels, the largest plausible
        raise ValueError(f"need n_subjects ≥ 1 and resolution ≥ 12, got {n_subjects} and {resolution}")
    wanted = set(phantom.PHANTOM_CLASSES if classes is None else classes)
    unknown = sorted(wanted - set(phantom.PHANTOM_CLASSES))
    if unknown or not wanted:
        raise ValueError(f"unknown phantom defect classes {unknown or '(none given)'}; "
                         f"choose from {phantom.PHANTOM_CLASSES}")
    classes = tuple(c for c in phantom.PHANTOM_CLASSES if c in wanted)  # canonical order: same set, same folder
    root = phantom_root(n_subjects, resolution, seed)
    if set(classes) != set(phantom.PHANTOM_CLASSES):
        root = root.with_name(root.name + "_" + "-".join(classes))
    phantom.make_phantom_dataset(root, n_subjects=n_subjects, shape=(resolution,) * 3, classes=classes, seed=seed)
    marker = root / PHANTOM_MARKER
    if not marker.is_file():
        info = {"n_subjects": n_subjects, "resolution": resolution, "seed": seed, "classes": list(classes)}
        atomic_write_text(marker, json.dumps(info, indent=2))
    return load_dataset(root, layout="phantom")


def natural_key(text: str) -> list:
    """Sort key that orders "2" before "10" (case ids are not always zero-padded)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]
