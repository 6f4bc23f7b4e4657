"""Registration-based augmentation: N subjects give N·(N−1) new cases, written as a SkullBreak-layout dataset.

Taught in notebook 03_registration_augmentation.

For every ordered pair (source, target) of subjects, the source's complete skull is registered onto the target's
(:func:`cranialkit.registration.register`), and the source's defective skull of every defect class is warped with
the found transform onto the target's anatomy. The new implant is post-processed as *implant AND NOT defective*;
we take it from the warped complete skull (``warp(complete) AND NOT warp(defective)``), which contains the warped
implant and also the rim voxels whose interpolated values only pass 0.5 together, so that
``defective | implant == complete`` holds exactly in the new case, as in the source data.

Each subject is first put on its own cubic grid of ``resolution``³ voxels around its complete skull
(:func:`cranialkit.preprocessing.make_grid_transform`); new cases are written on the target's grid (its spacing and
origin in mm) as ``complete_skull/<src>to<tgt>.nrrd``, ``defective_skull/<class>/<src>to<tgt>.nrrd`` and
``implant/<class>/<src>to<tgt>.nrrd``.

Long runs are safe: every file is written atomically, a pair is recorded in a JSON-lines manifest only after all its
files are on disk, and a restarted run skips recorded pairs. The output folder records what made it
(``identity.json``: source dataset and its files, resolution, classes, registration settings); a run with other
data or settings is refused unless ``overwrite`` starts over, and two processes running one shard are refused.
``shard``/``num_shards`` split the pairs (pair number p goes to shard ``p % num_shards``) so that several processes,
GPUs or machines can share the work with any launcher; each shard keeps its own manifest file, and every shard skips
what any manifest lists.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from cranialkit.config import device as resolve_device
from cranialkit.data.datasets import check_case_volumes
from cranialkit.io import write_volume
from cranialkit.jobs import Manifest, claim_output, exclusive_run, files_signature
from cranialkit.preprocessing import make_grid_transform
from cranialkit.registration import RegistrationConfig, register, summarize
from cranialkit.registration.transforms import warp_mask
from cranialkit.volume import Volume

MANIFEST_PATTERN = "manifest*.jsonl"


@dataclass
class Subject:
    """One subject on its own ``resolution``³ grid: the complete skull and, per defect class, (defective, implant)."""

    subject_id: str
    complete: np.ndarray
    defects: dict[str, tuple[np.ndarray, np.ndarray]]
    grid: Volume = field(repr=False)  # an empty volume that carries the grid's geometry (spacing, origin in mm)


def prepare_subjects(dataset, resolution: int = 64, classes: Sequence[str] | None = None) -> list[Subject]:
    """Group a dataset's cases by subject and put each subject on a cubic grid around its complete skull.

    Every case used needs a complete skull or an implant (complete = defective OR implant). Raises ``ValueError``
    naming the dataset when fewer than two subjects remain (no pair to register).
    """
    by_subject: dict[str, list] = {}
    for case in dataset.cases:
        if classes is not None and case.defect_class not in classes:
            continue
        if not case.has_ground_truth:
            continue
        by_subject.setdefault(case.case_id, []).append(case)
    if len(by_subject) < 2:
        raise ValueError(
            f"{dataset.root}: registration augmentation needs at least 2 subjects with ground truth "
            f"(complete skull or implant){' in classes ' + str(list(classes)) if classes else ''}; "
            f"found {len(by_subject)}"
        )
    shape = (int(resolution),) * 3
    subjects = []
    for subject_id, cases in by_subject.items():
        first = cases[0]
        complete = first.complete
        if complete is None:
            complete = first.defective.with_array(first.defective.array | first.implant.array)
        transform = make_grid_transform(complete, shape)
        defects = {}
        for case in cases:
            defective, implant = case.defective, case.implant
            if case.implant_path is not None:
                check_case_volumes(case, defective, implant=implant)
            for name, volume, path in (("defective skull", defective, case.defective_path),
                                       ("implant", implant, case.implant_path or case.complete_path)):
                if not volume.same_grid(complete, atol=1e-3):
                    raise ValueError(f"{path}: the {name} of case {case.key} is on another grid than the subject's "
                                     f"complete skull ({volume!r} vs {complete!r})")
            defects[case.defect_class] = (
                transform.apply(defective, order=0).array.astype(bool),
                transform.apply(implant, order=0).array.astype(bool),
            )
        grid_complete = transform.apply(complete, order=0)
        subjects.append(Subject(subject_id, grid_complete.array.astype(bool), defects,
                                grid_complete.with_array(np.zeros(shape, dtype=bool))))
    return subjects


def ordered_pairs(subject_ids: Sequence[str]) -> list[tuple[str, str]]:
    """All ordered pairs (source, target) of distinct subjects: N·(N−1) of them, in a fixed order."""
    return [(s, t) for s in subject_ids for t in subject_ids if s != t]


def choose_pairs(subject_ids: Sequence[str], budget: int | None, seed: int = 0) -> list[tuple[str, str]]:
    """At most ``budget`` ordered pairs of the subjects, drawn without replacement with ``seed`` and kept in the
    order of :func:`ordered_pairs` (all pairs when there are no more than ``budget``, or ``budget`` is None): with
    many subjects N·(N−1) registrations cost more than the few hundred new cases a training run can use."""
    pairs = ordered_pairs(list(subject_ids))
    if budget is None or len(pairs) <= budget:
        return pairs
    if budget < 1:
        raise ValueError(f"the pair budget must be >= 1, got {budget}")
    chosen = np.random.default_rng(seed).choice(len(pairs), size=int(budget), replace=False)
    return [pairs[i] for i in sorted(chosen)]


def shard_pairs(pairs: Sequence[tuple[str, str]], shard: int = 0, num_shards: int = 1) -> list[tuple[str, str]]:
    """The pairs that shard ``shard`` of ``num_shards`` handles: every ``num_shards``-th, starting at ``shard``."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in 0..{num_shards - 1}, got {shard}")
    return list(pairs[shard::num_shards])


def pair_id(source: str, target: str) -> str:
    """The case id of the new case made from ``source`` warped onto ``target``: ``"<source>to<target>"``."""
    return f"{source}to{target}"


def read_manifests(out: str | os.PathLike) -> list[dict]:
    """All finished pairs recorded in ``out`` by any shard, sorted by pair id."""
    records: dict[str, dict] = {}
    for path in sorted(Path(out).glob(MANIFEST_PATTERN)):
        for record in Manifest(path).records():
            records[record["key"]] = record
    return [records[k] for k in sorted(records)]


def _write_pair(out: Path, source: Subject, target: Subject, ddf: torch.Tensor) -> list[str]:
    """Warp the source's complete skull and every defect class onto the target and write them; returns classes."""
    new_id = pair_id(source.subject_id, target.subject_id)
    device = ddf.device

    def warped(mask: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(mask)[None, None].to(device)
        return warp_mask(tensor, ddf[None])[0, 0].cpu().numpy()

    complete = warped(source.complete)
    written = []
    for defect_class, (defective, _implant) in sorted(source.defects.items()):
        new_defective = warped(defective)
        new_implant = complete & ~new_defective  # implant AND NOT defective, from the warped complete skull
        write_volume(target.grid.with_array(new_defective), out / "defective_skull" / defect_class / f"{new_id}.nrrd")
        write_volume(target.grid.with_array(new_implant), out / "implant" / defect_class / f"{new_id}.nrrd")
        written.append(defect_class)
    write_volume(target.grid.with_array(complete), out / "complete_skull" / f"{new_id}.nrrd")
    return written


def augment_dataset(
    dataset,
    out: str | os.PathLike,
    config: RegistrationConfig | None = None,
    resolution: int = 64,
    shard: int = 0,
    num_shards: int = 1,
    batch_size: int = 1,
    device: str | torch.device = "auto",
    classes: Sequence[str] | None = None,
    max_pairs: int | None = None,
    progress: bool = True,
    on_pair_done: Callable[[dict], None] | None = None,
    overwrite: bool = False,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> list[dict]:
    """Register every ordered pair of subjects of ``dataset`` (or only ``pairs``, e.g. :func:`choose_pairs`) and
    write the new cases under ``out``.

    Resumable (finished pairs are skipped), shardable (``shard`` of ``num_shards``), ``batch_size`` pairs registered
    at once. ``max_pairs`` stops after that many new pairs (do a part now, the rest later); ``on_pair_done`` is
    called with each pair's manifest record after it is safely written. ``overwrite`` empties an ``out`` made from
    other data or settings (otherwise refused, naming the difference). Returns the manifest records of all pairs
    finished in ``out`` (by any shard).
    """
    config = config or RegistrationConfig()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1 (or None for all pairs), got {max_pairs}")
    out = Path(out)
    shard_pairs([], shard, num_shards)  # checks shard and num_shards before any work
    used = [c for c in dataset.cases if c.has_ground_truth and (classes is None or c.defect_class in classes)]
    identity = {"job": "register-augment", "source_dataset": str(Path(dataset.root).resolve()),
                "source_files": files_signature(dataset.root, [p for c in used for p in c.paths()]),
                "resolution": int(resolution), "classes": sorted(classes) if classes else None,
                "registration": asdict(config)}
    subjects = {s.subject_id: s for s in prepare_subjects(dataset, resolution, classes)}
    if pairs is not None:
        pairs = [(str(s), str(t)) for s, t in pairs]
        unknown = [p for p in pairs if p not in set(ordered_pairs(list(subjects)))]
        if unknown or not pairs:
            raise ValueError(f"{dataset.root}: pairs must be ordered pairs of distinct subjects with ground truth; "
                             f"{'none given' if not pairs else f'not so: {unknown[:3]}'}")
        identity["pairs"] = [list(p) for p in pairs]
    claim_output(out, identity, overwrite=overwrite, known=(MANIFEST_PATTERN,))
    with exclusive_run(out, f"register-shard-{shard}-of-{num_shards}", f"shard {shard} of {num_shards}"):
        _augment_shard(out, subjects, config, resolution, shard, num_shards, batch_size, device, max_pairs,
                       progress, on_pair_done, pairs)
    return read_manifests(out)


def _augment_shard(out: Path, subjects: dict[str, Subject], config: RegistrationConfig, resolution: int, shard: int,
                   num_shards: int, batch_size: int, device, max_pairs: int | None, progress: bool,
                   on_pair_done: Callable[[dict], None] | None, chosen: Sequence[tuple[str, str]] | None) -> None:
    """Register the unfinished pairs of one shard (see :func:`augment_dataset`)."""
    pairs = shard_pairs(ordered_pairs(list(subjects)) if chosen is None else list(chosen), shard, num_shards)
    manifest_name = "manifest.jsonl" if num_shards == 1 else f"manifest.shard-{shard}-of-{num_shards}.jsonl"
    manifest = Manifest(out / manifest_name)
    done = {r["key"] for r in read_manifests(out)}
    dev = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    # Fixed batches over the shard's full list (not over what is left), so that a resumed run registers every pair
    # in the same company as an uninterrupted run: results are identical bit for bit.
    batches = [pairs[i:i + batch_size] for i in range(0, len(pairs), batch_size)]
    new_pairs = 0
    with tqdm(total=len(pairs), initial=sum(pair_id(*p) in done for p in pairs), desc="register-augment",
              unit="pair", disable=not progress) as bar:
        for batch in batches:
            todo = [p for p in batch if pair_id(*p) not in done]
            if not todo:
                continue
            if max_pairs is not None and new_pairs >= max_pairs:
                break
            sources = np.stack([subjects[s].complete for s, _ in batch])
            targets = np.stack([subjects[t].complete for _, t in batch])
            result = register(sources, targets, config, device=dev)
            rows = summarize(result, sources, targets)
            for index, ((source, target), row) in enumerate(zip(batch, rows)):
                key = pair_id(source, target)
                if key in done:
                    continue
                written = _write_pair(out, subjects[source], subjects[target], result.ddf[index])
                record = {"key": key, "source": source, "target": target, "alpha": config.alpha,
                          "classes": written, "resolution": int(resolution), "device": str(dev), **row}
                manifest.add(record)
                done.add(key)
                new_pairs += 1
                bar.update(1)
                if on_pair_done is not None:
                    on_pair_done(record)
