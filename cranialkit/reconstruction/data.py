"""Training data for the reconstruction network: sources mixed by weight, augmented on the fly, reproducible.

Taught in notebook 10_unet_training.

A :class:`TrainingSource` is a set of prepared cases on the training grid (defective skull + target, bool arrays
``(N, D, H, W)``), a sampling weight and an optional augmentation (e.g. ``cranialkit.augment.geometric.preset``).
Typical sources: the real or phantom training cases as they are, the same cases with geometric augmentation on the
fly, and datasets generated beforehand by registration or generative models (written in the SkullBreak layout and
loaded with :func:`source_from_dataset`).

:class:`MixedBatches` makes the batch of training step ``s`` as a pure function of ``(seed, s)``: item ``b`` of
the batch picks a source (by weight), a case and its augmentation parameters from a random generator seeded with
``(seed, s, b)``. Hence a resumed run sees exactly the batches an uninterrupted run would have seen, the result
does not depend on the number of DataLoader workers, and DDP ranks simply take every ``world``-th item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cranialkit.reconstruction.network import TARGETS


@dataclass
class TrainingSource:
    """Prepared cases on the training grid: ``defective`` and ``target`` arrays ``(N, D, H, W)``, bool masks or
    uint8 partial volumes (shares 0–255, ``preprocessing.to_shares``). With partial volumes the augmentation must
    keep fractions (``preset(name, soft=True)``)."""

    name: str
    defective: np.ndarray
    target: np.ndarray
    weight: float = 1.0
    augment: Callable | None = None
    target_name: str = "implant"

    def __post_init__(self) -> None:
        self.defective = np.asarray(self.defective)
        self.target = np.asarray(self.target)
        if self.defective.ndim != 4 or self.defective.shape != self.target.shape:
            raise ValueError(
                f"source {self.name!r}: defective {self.defective.shape} and target {self.target.shape} must be "
                "equal (N, D, H, W) arrays"
            )
        if len(self.defective) == 0:
            raise ValueError(f"source {self.name!r}: no cases")
        if self.defective.dtype != self.target.dtype or self.defective.dtype not in (bool, np.uint8):
            raise ValueError(f"source {self.name!r}: defective and target must both be bool masks or both uint8 "
                             f"partial volumes, got {self.defective.dtype} and {self.target.dtype}")
        if not (np.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"source {self.name!r}: weight must be finite and >= 0, got {self.weight}")
        if self.target_name not in TARGETS:
            raise ValueError(f"source {self.name!r}: target_name must be one of {TARGETS}, got {self.target_name!r}")

    def __len__(self) -> int:
        return len(self.defective)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.defective.shape[1:])  # type: ignore[return-value]

    @property
    def partial_volume(self) -> bool:
        return self.defective.dtype == np.uint8


def source_from_arrays(
    name: str, arrays, target: str = "implant", weight: float = 1.0, augment: Callable | None = None
) -> TrainingSource:
    """A source from ``cranialkit.preprocessing.CaseArrays`` (fields ``defective``, ``implant``, ``complete``; bool
    masks or uint8 partial volumes)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {TARGETS}")
    goal = arrays.implant if target == "implant" else arrays.complete
    if goal is None:
        raise ValueError(f"source {name!r}: the cases have no {target} masks to train on")
    return TrainingSource(name, np.asarray(arrays.defective), np.asarray(goal), weight, augment, target)


def source_from_dataset(
    name: str,
    root,
    shape: Sequence[int] = (64, 64, 64),
    target: str = "implant",
    weight: float = 1.0,
    augment: Callable | None = None,
    partial_volume: bool = False,
) -> TrainingSource:
    """A source from a dataset folder (SkullBreak/SkullFix/phantom layout, e.g. a registration- or generator-made
    augmented dataset), prepared at ``shape`` with ``cranialkit.preprocessing.stack_cases`` (cached on disk)."""
    from cranialkit.data.datasets import load_dataset
    from cranialkit.preprocessing import stack_cases

    arrays = stack_cases(load_dataset(root), tuple(shape), partial_volume=partial_volume)
    return source_from_arrays(name, arrays, target, weight, augment)


def item_generator(seed: int, step: int, item: int) -> torch.Generator:
    """The random generator of batch item ``item`` at training step ``step`` (independent streams per item)."""
    state = np.random.SeedSequence([int(seed), int(step), int(item)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class WeightedBatches:
    """Deterministic batches whose items come from sources picked by weight: item ``b`` of step ``s`` depends only
    on ``(seed, s, b)`` (:func:`item_generator`). Subclasses say how an item is made from its source
    (:meth:`item`); ``batch`` stacks the items of one step.

    ``batch(step)`` returns ``(inputs, target, names)``: float tensors ``(B, C, D, H, W)`` on ``device`` and the
    source name of each item. With ``rank``/``world`` (DDP) only items ``rank, rank + world, …`` of the global batch
    are made. Augmentation runs on ``device`` (a GPU augments its own batch).
    """

    def __init__(self, sources: Sequence, batch_size: int, seed: int = 0):
        sources = [s for s in sources if s.weight > 0]
        if not sources:
            raise ValueError("no training source with a positive weight")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sources = list(sources)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        weights = torch.tensor([s.weight for s in self.sources], dtype=torch.float64)
        self.probabilities = weights / weights.sum()

    def pick(self, step: int, index: int):
        """The random generator of item ``index`` at ``step`` and the source it draws from."""
        generator = item_generator(self.seed, step, index)
        return generator, self.sources[int(torch.multinomial(self.probabilities, 1, generator=generator))]

    def item(self, step: int, index: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, str]:
        raise NotImplementedError

    def batch(
        self, step: int, device: torch.device | str = "cpu", rank: int = 0, world: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """The (part for ``rank`` of the) batch of training step ``step``."""
        if self.batch_size % world:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by the number of processes {world}")
        items = [self.item(step, i, device) for i in range(rank, self.batch_size, world)]
        return torch.cat([x for x, _, _ in items]), torch.cat([t for _, t, _ in items]), [n for _, _, n in items]


class MixedBatches(WeightedBatches):
    """Deterministic training batches of whole cases on the training grid, mixed from :class:`TrainingSource` s by
    weight: ``(defective, target)`` tensors ``(B, 1, D, H, W)`` in [0, 1] (masks: {0, 1})."""

    def __init__(self, sources: Sequence[TrainingSource], batch_size: int, seed: int = 0):
        super().__init__(sources, batch_size, seed)
        for what, value in (("grid shapes", lambda s: s.shape), ("targets", lambda s: s.target_name),
                            ("kinds (masks, partial volumes)", lambda s: s.partial_volume)):
            found = {s.name: value(s) for s in self.sources}
            if len(set(found.values())) != 1:
                raise ValueError(f"training sources have different {what}: {found}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.sources[0].shape

    @property
    def target_name(self) -> str:
        return self.sources[0].target_name

    @property
    def partial_volume(self) -> bool:
        return self.sources[0].partial_volume

    def item(self, step: int, index: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, str]:
        """Item ``index`` of the batch of ``step``: defective and target ``(1, 1, D, H, W)`` and the source name."""
        generator, source = self.pick(step, index)
        case = int(torch.randint(len(source), (1,), generator=generator))
        scale = 255.0 if source.partial_volume else 1.0
        defective = torch.from_numpy(source.defective[case]).to(device).float()[None, None] / scale
        target = torch.from_numpy(source.target[case]).to(device).float()[None, None] / scale
        if source.augment is not None:
            out = source.augment({"defective": defective, source.target_name: target}, generator)
            defective, target = out["defective"], out[source.target_name]
            if source.partial_volume:  # trilinear interpolation may overshoot [0, 1] by a rounding error
                defective, target = defective.clamp(0, 1), target.clamp(0, 1)
        return defective, target, source.name


class StepBatchDataset(torch.utils.data.Dataset):
    """Batches of steps ``start … stop-1`` as a map-style dataset, so CPU ``DataLoader`` workers can prepare them.

    Use with ``DataLoader(dataset, batch_size=None, num_workers=k)``; the batches are the same as
    ``MixedBatches.batch(step)`` whatever ``k`` is.
    """

    def __init__(self, batches: MixedBatches, start: int, stop: int, rank: int = 0, world: int = 1):
        self.batches, self.start, self.stop, self.rank, self.world = batches, int(start), int(stop), rank, world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        step = self.start + int(index)
        defective, target, _ = self.batches.batch(step, "cpu", self.rank, self.world)
        return step, defective, target


def make_loader(
    batches: MixedBatches, start: int, stop: int, num_workers: int = 0, rank: int = 0, world: int = 1
) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` over the batches of steps ``start … stop-1`` (CPU augmentation in ``num_workers``)."""
    dataset = StepBatchDataset(batches, start, stop, rank, world)
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=num_workers, persistent_workers=False
    )


def load_splits(
    data: str = "phantom", n_subjects: int = 20, resolution: int = 64, data_seed: int = 0, split_seed: int = 0
) -> dict:
    """The train/val/test split (by subject) of the phantom dataset (``data="phantom"``: ``n_subjects`` phantoms
    at ``resolution``³, made once under the data dir) or of the dataset ``data``: a folder of any supported layout,
    or the name of a downloaded dataset (``"skullfix"``)."""
    from cranialkit.data.datasets import Dataset, load_dataset, phantom_dataset

    if data == "phantom":
        dataset = phantom_dataset(n_subjects=n_subjects, resolution=resolution, seed=data_seed)
    else:
        full = load_dataset(data)
        dataset = Dataset(full.root, full.layout, [c for c in full.cases if c.has_ground_truth])
        if not dataset.cases:
            raise ValueError(f"{data}: no case with a ground-truth implant to train or evaluate on")
    return dataset.split(seed=split_seed)


def refit_splits(splits: dict) -> dict:
    """``splits`` with the validation part joined to the training part ("val" left empty): once a recipe has been
    chosen on the validation part, the final stages learn from every skull outside the test part, which stays the
    same. Without validation the trainer keeps the last checkpoint."""
    from cranialkit.data.datasets import Dataset, natural_key

    train, val = splits["train"], splits["val"]
    cases = sorted([*train.cases, *val.cases], key=lambda c: (c.defect_class, natural_key(c.case_id)))
    return {**splits, "train": Dataset(train.root, train.layout, cases), "val": Dataset(val.root, val.layout, [])}
