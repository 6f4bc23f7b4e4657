"""The fine stage of two-stage reconstruction: the implant at about 1 mm, in a crop around the defect.

Taught in notebook 11_two_stage_reconstruction.

One coarse grid over a whole head (64³ ≈ 3 mm per voxel) draws a 5 mm thick implant with two voxels: its
surfaces are staircases. The fine stage starts from the coarse stage's implant and

1. crops a box around it (``margin_mm`` on every side) out of the *original* defective skull and resamples that box
   to an isotropic fine grid (``spacing_mm``, e.g. 1 mm on a CPU, 0.5 mm on a GPU), keeping the share of each fine
   voxel that is bone (partial volume, :meth:`~cranialkit.preprocessing.GridTransform.fraction`);
2. resamples the coarse implant probability to the same grid (trilinear);
3. lets a second residual U-Net predict the implant there from these two channels, patch by patch (MONAI's
   sliding-window inference; mirror averaging as in the coarse stage);
4. interpolates its probability back to the original grid (trilinear) and thresholds it there together with the
   bone share (:func:`~cranialkit.preprocessing.implant_beside_bone`), so the implant's surfaces fall between fine
   voxels and its rim meets the defective skull voxel for voxel.

Training sees patches (``patch`` voxels) of regions around the *true* implant, centred on the implant with a random
offset, and a coarse channel simulated from the true implant: its share of each coarse-grid voxel (what a coarse
stage trained on partial volumes outputs), a little thicker or thinner, partly erased and shifted, then smoothed
back — so the network keeps the implant's place and thickness from the coarse stage, which sees the whole head, and
draws its surfaces and rim from the skull around it. Targets are partial volumes too (Dice +
cross-entropy, :func:`~cranialkit.reconstruction.losses.dice_bce_loss`). Validation places its crops with the
trained coarse stage, as inference does, and scores the implant on the original grid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cranialkit.augment.geometric import Compose, preset
from cranialkit.config import data_dir
from cranialkit.preprocessing import (
    GridTransform,
    _cache_key,
    _files_signature,
    _save_npz,
    bounding_box,
    box_grid_transform,
    implant_beside_bone,
    largest_component,
    make_grid_transform,
    to_shares,
)
from cranialkit.reconstruction.data import WeightedBatches
from cranialkit.reconstruction.network import ModelConfig
from cranialkit.volume import Volume

FINE_KEYS = ("defective", "coarse", "implant")
_FINE_CACHE_VERSION = 1


@dataclass(frozen=True)
class FineConfig:
    """Settings of a fine stage; they are stored in its checkpoint and must fit the coarse stage it follows.

    ``spacing_mm``: isotropic spacing of the fine grid (mm). ``margin_mm``: how far the crop reaches beyond the
    coarse implant's box (mm). ``patch``: training patch and sliding window (voxels, divisible by 16 for the
    "compact"/"small"/"paper" networks). ``coarse_shape``: the coarse grid whose voxel size the simulated coarse
    channel imitates; a coarse stage on another grid does not fit.
    """

    spacing_mm: float = 1.0
    margin_mm: float = 10.0
    patch: tuple[int, int, int] = (64, 64, 64)
    coarse_shape: tuple[int, int, int] = (64, 64, 64)

    def __post_init__(self) -> None:
        if not 0.05 <= float(self.spacing_mm) <= 20:
            raise ValueError(f"FineConfig.spacing_mm must be within 0.05–20 mm, got {self.spacing_mm}")
        if not 0 <= float(self.margin_mm) <= 100:
            raise ValueError(f"FineConfig.margin_mm must be within 0–100 mm, got {self.margin_mm}")
        for name in ("patch", "coarse_shape"):
            value = tuple(int(v) for v in getattr(self, name))
            if len(value) != 3 or min(value) < 8:
                raise ValueError(f"FineConfig.{name} must be three sides of at least 8 voxels, got {value}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "spacing_mm", float(self.spacing_mm))
        object.__setattr__(self, "margin_mm", float(self.margin_mm))

    @property
    def context_mm(self) -> float:
        """Half a patch in mm: training regions reach this far beyond the implant (plus the margin)."""
        return max(self.patch) * self.spacing_mm / 2

    def to_dict(self) -> dict:
        return {"spacing_mm": self.spacing_mm, "margin_mm": self.margin_mm, "patch": list(self.patch),
                "coarse_shape": list(self.coarse_shape)}

    @classmethod
    def from_dict(cls, data: dict) -> FineConfig:
        return cls(float(data["spacing_mm"]), float(data["margin_mm"]), tuple(data["patch"]),
                   tuple(data["coarse_shape"]))


def check_stages_fit(coarse: ModelConfig, fine_model: ModelConfig, fine: FineConfig) -> None:
    """Raise a ``ValueError`` that says what differs when a fine stage cannot follow this coarse stage."""
    if fine_model.in_channels != 2:
        raise ValueError(f"the fine-stage network takes {fine_model.in_channels} input channel(s), not 2 (defective "
                         "skull, coarse implant): is it a coarse-stage checkpoint?")
    if coarse.in_channels != 1:
        raise ValueError("the coarse-stage network takes 2 input channels: is it a fine-stage checkpoint?")
    if tuple(coarse.shape) != tuple(fine.coarse_shape):
        raise ValueError(f"the fine stage was trained to follow a coarse stage on a {fine.coarse_shape} grid, but the "
                         f"coarse stage works on {coarse.shape}; train a fine stage with coarse_shape={coarse.shape}")


# --------------------------------------------------------------------------------------------- prepared regions


@dataclass
class FineCase:
    """A training region around one case's true implant on the fine grid; partial volumes stored as uint8 (/255)."""

    case_id: str
    defect_class: str
    transform: GridTransform
    defective_u8: np.ndarray
    implant_u8: np.ndarray
    coarse_voxels: float  # edge of a coarse-grid voxel, in fine voxels
    _centres: np.ndarray | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return f"{self.defect_class}/{self.case_id}"

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.defective_u8.shape)  # type: ignore[return-value]

    def implant_voxels(self) -> np.ndarray:
        """Flat indices of the fine voxels at least half covered by the implant (patch centres)."""
        if self._centres is None:
            self._centres = np.flatnonzero(self.implant_u8 >= 128)
        return self._centres


def prepare_fine_case(case, config: FineConfig) -> FineCase:
    """Read a case with ground truth and put its true implant's surroundings on the fine grid (training region:
    the implant's box plus ``margin_mm`` plus half a patch, so that every patch centred near the implant is real)."""
    from cranialkit.data.datasets import check_case_volumes
    from cranialkit.io import read_mask

    defective = read_mask(case.defective_path)
    implant = case.implant
    if implant is None:
        raise ValueError(f"{case.defective_path}: case {case.key} has no implant or complete skull to train on")
    if not implant.array.any():
        raise ValueError(f"{case.defective_path}: the implant of case {case.key} is empty")
    check_case_volumes(case, defective, implant=implant)  # one grid; implant off the skull
    lo, hi = bounding_box(implant.array)
    transform = box_grid_transform(defective, lo, hi, None, config.margin_mm + config.context_mm, config.spacing_mm)
    coarse = make_grid_transform(defective, config.coarse_shape)
    return FineCase(
        case.case_id, case.defect_class, transform, to_shares(transform.fraction(defective).array),
        to_shares(transform.fraction(implant).array), float(coarse.spacing_mm.max() / config.spacing_mm),
    )


def fine_cases(dataset, config: FineConfig, cache: bool = True, progress: bool = True) -> list[FineCase]:
    """:func:`prepare_fine_case` for every case of ``dataset``, with a progress bar; each case is cached under
    ``data_dir()/cache/fine/`` (keyed by its files and the settings), so a second call only loads."""
    cache_dir = data_dir() / "cache" / "fine"
    settings = {"v": _FINE_CACHE_VERSION, "spacing_mm": config.spacing_mm, "margin_mm": config.margin_mm,
                "context_mm": config.context_mm, "coarse_shape": list(config.coarse_shape)}
    cases = []
    for case in tqdm(list(dataset), desc="preparing fine regions", unit="case", disable=not progress):
        path = cache_dir / f"{_cache_key({'files': _files_signature(case.paths()), **settings})}.npz"
        if cache and path.is_file():
            with np.load(path, allow_pickle=False) as data:
                cases.append(FineCase(case.case_id, case.defect_class,
                                      GridTransform.from_dict(json.loads(str(data["transform"]))),
                                      data["defective"], data["implant"], float(data["coarse_voxels"])))
            continue
        prepared = prepare_fine_case(case, config)
        if cache:
            _save_npz(path, defective=prepared.defective_u8, implant=prepared.implant_u8,
                      coarse_voxels=np.asarray(prepared.coarse_voxels),
                      transform=np.asarray(json.dumps(prepared.transform.to_dict())))
        cases.append(prepared)
    return cases


def round_trips(defective: Volume, implant: Volume, config: FineConfig) -> dict[str, np.ndarray]:
    """The true implant taken to a grid and back to the original one, made disjoint from the defective skull: what a
    perfect network on that grid could at best deliver (bool arrays on the original grid).

    ``"coarse grid, nearest"``: the coarse grid (``config.coarse_shape`` over the head) with nearest-neighbour
    masks, as a one-stage network sees and draws them; ``"coarse grid, partial volume"``: the same grid holding the
    share of each voxel that implant and bone cover, interpolated back (trilinear) and thresholded together
    (:func:`~cranialkit.preprocessing.implant_beside_bone`); ``"fine grid, partial volume"``: the same on the fine
    grid of ``config`` around the implant.
    """
    from cranialkit.io import as_mask

    defective, implant = as_mask(defective, "defective skull"), as_mask(implant, "implant")
    coarse = make_grid_transform(defective, config.coarse_shape)
    lo, hi = bounding_box(implant.array)
    fine = box_grid_transform(defective, lo, hi, None, config.margin_mm, config.spacing_mm)
    outside = ~defective.array

    def shares_and_back(grid: GridTransform) -> np.ndarray:
        back = [grid.to_original(grid.fraction(mask).array).array for mask in (implant, defective)]
        return implant_beside_bone(*back) & outside

    return {
        "coarse grid, nearest": coarse.to_original(coarse.apply(implant).array).array & outside,
        "coarse grid, partial volume": shares_and_back(coarse),
        "fine grid, partial volume": shares_and_back(fine),
    }


# --------------------------------------------------------------------------------------------- training batches


def fine_augmentation(name: str = "mild") -> Compose:
    """The geometric augmentation preset ``name`` (``cranialkit.augment.geometric.preset``) for fine patches: all
    three channels move together and stay fractions."""
    return preset(name, soft=True, keys=FINE_KEYS)


def simulate_coarse(implant: torch.Tensor, coarse_voxels: float, generator: torch.Generator) -> torch.Tensor:
    """A plausible coarse-stage probability for a fine patch ``(1, 1, D, H, W)`` of the true implant's partial volume.

    A coarse stage trained on partial volumes outputs the share of each coarse voxel that the implant covers, so the
    channel starts from exactly that: the implant averaged over coarse voxels (``coarse_voxels`` fine voxels per
    edge). Its errors are imitated: the shares are scaled by a gain in 0.85–1.15 (a slightly thicker or thinner
    implant), a random blob is erased with probability 1/4, and after upsampling (trilinear) the channel is shifted
    by up to half a coarse voxel along each axis and scaled by a confidence in 0.8–1. The fine network thus keeps
    the implant's place and thickness from this channel, which sees the whole head, and takes the surfaces' exact
    position and the rim from the skull in its patch.
    """
    k = max(1, int(round(coarse_voxels)))
    size = implant.shape[2:]
    draws = torch.rand(4, generator=generator)
    shift = torch.randint(-(k // 2), k // 2 + 1, (3,), generator=generator)
    blob = torch.rand(1, 1, 3, 3, 3, generator=generator)
    coarse = (F.avg_pool3d(implant, k, stride=k, ceil_mode=True) * (0.85 + 0.3 * draws[0])).clamp(0, 1)
    if draws[1] < 0.25:
        keep = F.interpolate(blob.to(coarse.device), size=coarse.shape[2:], mode="trilinear", align_corners=False)
        coarse = coarse * (keep > 0.25 + 0.5 * draws[2]).float()
    up = F.interpolate(coarse, scale_factor=k, mode="trilinear", align_corners=False)[..., : size[0], : size[1],
                                                                                       : size[2]]
    return torch.roll(up, shifts=tuple(int(s) for s in shift), dims=(2, 3, 4)) * (0.8 + 0.2 * draws[3])


@dataclass
class FineSource:
    """Fine training regions, a sampling weight and an augmentation (e.g. :func:`fine_augmentation`)."""

    name: str
    cases: list[FineCase]
    weight: float = 1.0
    augment: Callable | None = None

    def __post_init__(self) -> None:
        if not self.cases:
            raise ValueError(f"fine source {self.name!r}: no cases")
        if not (np.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"fine source {self.name!r}: weight must be finite and >= 0, got {self.weight}")


def _patch(array: np.ndarray, corner: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``array[corner : corner + size]`` with zeros where the window leaves the array."""
    out = np.zeros(tuple(size), array.dtype)
    src = tuple(slice(max(c, 0), min(c + s, n)) for c, s, n in zip(corner, size, array.shape))
    dst = tuple(slice(s.start - c, s.stop - c) for s, c in zip(src, corner))
    if all(s.stop > s.start for s in src):
        out[dst] = array[src]
    return out


class FineBatches(WeightedBatches):
    """Deterministic batches of fine patches mixed from several :class:`FineSource` s by weight (item ``b`` of step
    ``s`` depends only on ``(seed, s, b)``, so a resumed run sees the batches an uninterrupted one would).

    ``batch(step)`` returns ``(inputs, target, names)``: ``inputs`` ``(B, 2, *patch)`` (defective skull, coarse
    implant), ``target`` ``(B, 1, *patch)`` (implant partial volume). A patch is centred on a random implant voxel
    moved by up to a quarter patch with probability ``on_implant``, anywhere in the region otherwise.
    """

    target_name = "implant"

    def __init__(self, sources: Sequence[FineSource], batch_size: int, patch: Sequence[int], seed: int = 0,
                 on_implant: float = 0.8):
        super().__init__(sources, batch_size, seed)
        self.patch = tuple(int(p) for p in patch)
        self.on_implant = float(on_implant)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.patch  # type: ignore[return-value]

    def item(self, step: int, index: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, str]:
        generator, source = self.pick(step, index)
        case = source.cases[int(torch.randint(len(source.cases), (1,), generator=generator))]
        patch = np.asarray(self.patch)
        draws = torch.rand(4, generator=generator).numpy()
        centres = case.implant_voxels()
        if draws[0] < self.on_implant and len(centres):
            pick = int(torch.randint(len(centres), (1,), generator=generator))
            centre = np.asarray(np.unravel_index(centres[pick], case.shape))
            centre = centre + np.round((draws[1:] - 0.5) * patch / 2).astype(np.int64)
        else:
            centre = np.round(draws[1:] * (np.asarray(case.shape) - 1)).astype(np.int64)
        corner = centre - patch // 2

        def fraction_patch(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(_patch(array, corner, patch)).to(device).float()[None, None] / 255

        defective, implant = fraction_patch(case.defective_u8), fraction_patch(case.implant_u8)
        sample = {"defective": defective, "coarse": simulate_coarse(implant, case.coarse_voxels, generator),
                  "implant": implant}
        if source.augment is not None:
            sample = source.augment(sample, generator)
        inputs = torch.cat([sample["defective"], sample["coarse"]], dim=1).clamp(0, 1)  # interpolation overshoots
        return inputs, sample["implant"].clamp(0, 1), source.name


# --------------------------------------------------------------------------------------------- inference


@torch.no_grad()
def fine_probability(model: torch.nn.Module, inputs: np.ndarray, patch: Sequence[int], device: torch.device | str,
                     amp: bool = True, flip_axes: tuple[int, ...] = (0,), overlap: float = 0.5) -> np.ndarray:
    """The implant probability on a fine region from ``inputs`` ``(2, D, H, W)`` (defective partial volume, coarse
    probability): MONAI's sliding-window inference with ``patch`` windows (Gaussian-weighted overlaps), averaged
    with the prediction for the region mirrored along each of ``flip_axes``."""
    from monai.inferers import sliding_window_inference

    from cranialkit.reconstruction.inference import autocast_context

    dev = torch.device(device)
    was_training = model.training
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(inputs, np.float32))[None].to(dev)

    def predictor(window: torch.Tensor) -> torch.Tensor:
        with autocast_context(dev, amp):
            return torch.sigmoid(model(window).float())

    def run(volume: torch.Tensor) -> torch.Tensor:
        return sliding_window_inference(volume, tuple(patch), 4, predictor, overlap=overlap, mode="gaussian")

    prob = run(x)
    for axis in flip_axes:
        prob = prob + torch.flip(run(torch.flip(x, (axis + 2,))), (axis + 2,))
    model.train(was_training)
    return (prob / (1 + len(flip_axes)))[0, 0].float().cpu().numpy()


def coarse_box_in_original(implant_grid: np.ndarray, coarse: GridTransform) -> tuple[np.ndarray, np.ndarray]:
    """The original voxel box (inclusive ``lo``, ``hi``) that the coarse implant's grid voxels cover."""
    lo_g, hi_g = bounding_box(implant_grid)
    lo = np.floor(coarse.start + lo_g * coarse.step - coarse.step / 2 + 0.5)
    hi = np.ceil(coarse.start + hi_g * coarse.step + coarse.step / 2 - 0.5)
    top = np.asarray(coarse.original_shape) - 1
    return np.clip(lo, 0, top).astype(np.int64), np.clip(hi, 0, top).astype(np.int64)


@dataclass
class FineInputs:
    """What the fine network sees for one case: its region's transform and the two input channels."""

    transform: GridTransform
    inputs: np.ndarray  # (2, D, H, W) float32: defective partial volume, coarse implant probability


def fine_inputs(defective: Volume, coarse_probability: np.ndarray, coarse: GridTransform, implant_grid: np.ndarray,
                config: FineConfig) -> FineInputs:
    """The fine region around the coarse implant (its box plus ``margin_mm``) and the network's two channels.

    ``coarse_probability`` is the coarse network's implant probability on the coarse grid (``coarse``);
    ``implant_grid`` its post-processed implant there, which places the crop and limits the coarse channel to the
    kept implant (one coarse voxel around it).
    """
    lo, hi = coarse_box_in_original(implant_grid, coarse)
    transform = box_grid_transform(defective, lo, hi, None, config.margin_mm, config.spacing_mm)
    from cranialkit.reconstruction.inference import dilate_grid

    hint = np.clip(transform.resample_from(coarse_probability * dilate_grid(implant_grid), coarse), 0, 1)
    return FineInputs(transform, np.stack([transform.fraction(defective).array, hint]).astype(np.float32))


def implant_in_box(probability: np.ndarray, bone: np.ndarray, transform: GridTransform, defective_box: np.ndarray,
                   threshold: float = 0.5) -> np.ndarray:
    """The implant on the original grid inside the region's box (``transform.original_box()``): the fine
    probability and the fine grid's bone share (``bone``, the network's first channel) interpolated (trilinear)
    and thresholded together (:func:`~cranialkit.preprocessing.implant_beside_bone`), made disjoint from the
    defective skull in the box (``defective_box``, bool) and reduced to its largest connected part."""
    box = transform.original_box()
    prob = transform._interpolate_box(probability, box, order=1)
    bone_share = transform._interpolate_box(bone, box, order=1)
    return largest_component(implant_beside_bone(prob, bone_share, threshold) & ~np.asarray(defective_box, bool))


class FineStage:
    """A trained fine network with its :class:`FineConfig`, ready to follow a coarse stage."""

    def __init__(self, model: torch.nn.Module, model_config: ModelConfig, config: FineConfig,
                 device: torch.device | str = "cpu", amp: bool = True, flip_axes: tuple[int, ...] = (0,),
                 threshold: float = 0.5, overlap: float = 0.5):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.model_config = model_config
        self.config = config
        self.amp = amp
        self.flip_axes = tuple(int(a) for a in flip_axes)
        self.threshold = float(threshold)
        self.overlap = float(overlap)
        self.coarse_checkpoint: str | None = None  # the coarse stage it was validated with, when it was trained so

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: torch.device | str = "cpu", **kwargs) -> FineStage:
        from cranialkit.reconstruction.inference import load_checkpoint

        model, model_config, state = load_checkpoint(path, device, with_state=True)
        if "fine_config" not in state:
            raise ValueError(f"{path}: a coarse-stage checkpoint (grid {model_config.shape}), not a fine stage")
        stage = cls(model, model_config, FineConfig.from_dict(state["fine_config"]), device, **kwargs)
        stage.coarse_checkpoint = str(state.get("coarse_checkpoint", "")) or None
        return stage

    def probability(self, inputs: FineInputs) -> np.ndarray:
        return fine_probability(self.model, inputs.inputs, self.config.patch, self.device, self.amp, self.flip_axes,
                                self.overlap)

    def reconstruct(self, defective: Volume, coarse_probability: np.ndarray, coarse: GridTransform,
                    implant_grid: np.ndarray) -> Volume:
        """The implant on the original grid (bool Volume) from the coarse stage's output for ``defective``."""
        out = np.zeros(defective.shape, bool)
        if implant_grid.any():
            inputs = fine_inputs(defective, coarse_probability, coarse, implant_grid, self.config)
            box = inputs.transform.original_box()
            out[box] = implant_in_box(self.probability(inputs), inputs.inputs[0], inputs.transform,
                                      defective.array[box], self.threshold)
        return defective.with_array(out)


# --------------------------------------------------------------------------------------------- validation


@dataclass
class FineValidationCase:
    """One validation case as inference meets it: the region placed by the coarse stage, and the truth there."""

    key: str
    inputs: FineInputs
    defective: np.ndarray  # original-grid crop (bool) of the region's box (inputs.transform.original_box())
    implant: np.ndarray
    spacing: np.ndarray


class FineValidation:
    """Validation of a fine network on crops placed by a trained coarse stage, scored on the original grid (inside
    each crop's box): mean DSC, boundary DSC and HD95 (mm). ``score`` is what the trainer calls."""

    def __init__(self, cases: Sequence[FineValidationCase], config: FineConfig, flip_axes: tuple[int, ...] = ()):
        if not cases:
            raise ValueError("fine validation needs at least one case")
        self.cases = list(cases)
        self.config = config
        self.flip_axes = flip_axes

    def score(self, model: torch.nn.Module, device: torch.device, amp: bool = True) -> dict:
        from cranialkit.metrics import evaluate_implant

        rows = []
        for case in self.cases:
            prob = fine_probability(model, case.inputs.inputs, self.config.patch, device, amp, self.flip_axes)
            pred = implant_in_box(prob, case.inputs.inputs[0], case.inputs.transform, case.defective)
            rows.append(evaluate_implant(pred, case.implant, case.defective, case.spacing))
        return {key: float(np.mean([r[key] for r in rows])) for key in ("dsc", "bdsc", "hd95")}


def fine_validation(cases, coarse, config: FineConfig, progress: bool = True) -> FineValidation | None:
    """:class:`FineValidation` for dataset cases with ground truth, their crops placed by ``coarse`` (a one-stage
    :class:`~cranialkit.reconstruction.inference.Reconstructor`). Cases whose coarse implant is empty are left out
    (the fine stage has nowhere to look); None when none is left."""
    items = []
    for case in tqdm(list(cases), desc="placing validation crops", unit="case", disable=not progress):
        defective = case.defective
        implant = case.implant
        out = coarse.coarse_stage(defective)
        if not out.implant.any():
            continue
        inputs = fine_inputs(defective, out.probability, out.transform, out.implant, config)
        box = inputs.transform.original_box()
        items.append(FineValidationCase(case.key, inputs, defective.array[box].copy(), implant.array[box].copy(),
                                        defective.spacing.copy()))
    return FineValidation(items, config) if items else None

