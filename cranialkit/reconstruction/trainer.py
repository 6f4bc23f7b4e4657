"""Training loop for the reconstruction networks: seeded, resumable, mixed precision and DDP where available.

Taught in notebooks 10_unet_training and 11_two_stage_reconstruction.

One step = one batch from :class:`~cranialkit.reconstruction.data.MixedBatches` (a pure function of seed and step;
the fine stage's patches, :class:`~cranialkit.reconstruction.fine.FineBatches`, work the same way), soft Dice loss
(or Dice + cross-entropy, ``TrainConfig.loss``), Adam with cosine learning-rate decay. Every ``val_every`` steps
the network is validated on held-out cases on the training grid (implant DSC, boundary DSC, HD95 in mm with
``cranialkit.metrics``; any object with a ``score(model, device, amp) -> dict`` method, such as the fine stage's
validation, stands in for them); the best validation DSC is kept as ``best.pt`` and the latest state as
``last.pt`` in ``run_dir`` (written atomically). A run started again with the same ``run_dir`` resumes from
``last.pt`` (``torch.load(..., weights_only=True)``) and ends in exactly the state an uninterrupted run would have
reached: model, optimizer, scheduler and scaler are restored and the batches depend only on the step (bit for bit
on a CPU; on a GPU up to cuDNN's non-deterministic kernels). Under DDP the logged training loss is rank 0's share
of the batch.

On CUDA the loop uses autocast (bf16, else fp16 with a ``GradScaler``) and ``torch.compile``; on CPU neither.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from cranialkit.config import cpu_threads, seed_everything, supports_autocast
from cranialkit.config import device as pick_device
from cranialkit.jobs import atomic_torch_save, atomic_write_text, load_weights
from cranialkit.reconstruction import distributed
from cranialkit.reconstruction.data import MixedBatches, TrainingSource, make_loader
from cranialkit.reconstruction.inference import autocast_context, predict_implants
from cranialkit.reconstruction.losses import LOSSES
from cranialkit.reconstruction.network import ModelConfig

CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    """How to train. Steps and batch size count *global* batches (all DDP processes together)."""

    steps: int = 1000
    batch_size: int = 2
    lr: float = 2e-3
    min_lr_fraction: float = 0.05  # cosine decay from lr to lr * min_lr_fraction over `steps`
    weight_decay: float = 0.0
    val_every: int = 100
    checkpoint_every: int | None = None  # default: val_every
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # autocast where supported (CUDA); ignored on CPU
    compile: str = "auto"  # "auto" = on CUDA only, "on", "off"
    num_workers: int = 0  # > 0: CPU DataLoader workers make and augment batches; 0: the main process, on device
    val_batch_size: int = 2
    progress: bool = True
    time_limit_s: float | None = None  # stop (and save) early when the wall time of this call exceeds it
    loss: str = "dice"  # "dice" (binary targets) or "dice+bce" (targets that are fractions, the fine stage)
    threads: int | None = None  # CPU threads; None: chosen from the free cores (cranialkit.config.cpu_threads)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "val_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.loss not in LOSSES:
            raise ValueError(f"TrainConfig.loss must be one of {tuple(LOSSES)}, got {self.loss!r}")
        if self.compile not in ("auto", "on", "off"):
            raise ValueError(f"TrainConfig.compile must be 'auto', 'on' or 'off', got {self.compile!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What a training call leaves: the network (last weights), its history and the checkpoint paths."""

    model: torch.nn.Module
    model_config: ModelConfig
    history: dict
    step: int
    run_dir: Path | None
    best_path: Path | None = None
    last_path: Path | None = None
    finished: bool = True
    extras: dict = field(default_factory=dict)


def _lr_factor(step: int, total: int, min_fraction: float) -> float:
    """Cosine decay from 1 to ``min_fraction`` over ``total`` steps."""
    progress = min(step, total) / max(total, 1)
    return min_fraction + (1 - min_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def validate(
    model: torch.nn.Module,
    val,
    device: torch.device,
    amp: bool = True,
    batch_size: int = 2,
    target: str = "implant",
) -> dict:
    """Mean implant DSC, boundary DSC and HD95 (mm) over validation cases on the training grid.

    ``val`` is a ``cranialkit.preprocessing.CaseArrays`` (``defective``, ``implant``, ``spacing_mm``; masks or
    partial volumes, scored as the voxels at least half covered). Predictions are thresholded and made disjoint from
    the defective skull, without further post-processing.
    """
    from cranialkit.metrics import evaluate_implant
    from cranialkit.preprocessing import as_mask

    pred = predict_implants(model, val.defective, target, device, batch_size, amp)
    truth, defective = as_mask(val.implant) & ~as_mask(val.defective), as_mask(val.defective)
    rows = [evaluate_implant(pred[i], truth[i], defective[i], val.spacing_mm[i]) for i in range(len(pred))]
    return {key: float(np.mean([r[key] for r in rows])) for key in ("dsc", "bdsc", "hd95")}


def _checkpoint(model, optimizer, scheduler, scaler, step, history, best, model_config, train_config,
                extra_state=None) -> dict:
    return {
        **(extra_state or {}),
        "version": CHECKPOINT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "step": step,
        "history": history,
        "best_dsc": best,
        "model_config": model_config.to_dict(),
        "train_config": train_config.to_dict(),
    }


def load_training_state(path: str | Path) -> dict:
    """A training checkpoint as saved by :func:`train`, loaded with ``weights_only=True``."""
    from cranialkit.checkpoints import read_checkpoint
    from cranialkit.errors import CheckpointError

    path = Path(path)
    state = read_checkpoint(path, "reconstruction")
    missing = {"model", "optimizer", "scheduler", "step", "history", "model_config"} - set(state)
    if missing:
        raise CheckpointError(f"{path}: a reconstruction checkpoint without its training state (missing "
                              f"{sorted(missing)}); train into a new run folder")
    return state


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    sources: list[TrainingSource] | MixedBatches,
    val=None,
    run_dir: str | Path | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    extra_state: dict | None = None,
    init_weights: str | Path | None = None,
) -> TrainResult:
    """Train a residual U-Net on ``sources`` (mixed by weight), validating on ``val`` (``CaseArrays``, an object
    with a ``score(model, device, amp)`` method, or None).

    ``sources`` may also be a ready batch maker (an object with ``batch(step, device, rank, world)``, ``shape``
    and ``target_name``, e.g. the fine stage's patches). ``run_dir`` holds ``last.pt``, ``best.pt`` and
    ``history.json``; with ``resume`` an existing ``last.pt`` is continued. ``stop_after`` ends this call after
    that many total steps (saving ``last.pt``), as an interruption would; call again to resume. ``extra_state``
    (plain values) is stored in every checkpoint, e.g. the fine stage's settings. ``init_weights``: a checkpoint
    of a network with the same configuration whose weights a new run starts from (pretraining, e.g. on phantoms,
    then fine-tuning); optimizer and schedule start afresh, and a resumed run ignores it. Returns a
    :class:`TrainResult`.
    """
    dist_info = distributed.current()
    dev = distributed.device_for(dist_info, pick_device(train_config.device))
    if hasattr(sources, "batch"):
        batches = sources
    else:
        batches = MixedBatches(sources, train_config.batch_size, train_config.seed)
    if batches.shape != model_config.shape:
        raise ValueError(f"training cases are on grid {batches.shape}, the model expects {model_config.shape}")
    if getattr(batches, "partial_volume", False) != model_config.partial_volume and not hasattr(sources, "batch"):
        kind = "partial volumes" if model_config.partial_volume else "masks"
        raise ValueError(f"the model takes {kind}, the training sources do not give them; prepare the cases with "
                         f"stack_cases(..., partial_volume={model_config.partial_volume})")
    if batches.target_name != model_config.target:
        raise ValueError(
            f"training sources give {batches.target_name!r} targets, the model predicts {model_config.target!r}"
        )
    on_grid = val is not None and not hasattr(val, "score")
    if on_grid and tuple(np.asarray(val.defective).shape[1:]) != model_config.shape:
        raise ValueError(
            f"validation cases are on grid {np.asarray(val.defective).shape[1:]}, expected {model_config.shape}"
        )

    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest convolutions
    elif dev.type == "cpu":
        threads, why = cpu_threads(train_config.threads)
        torch.set_num_threads(threads)
        if train_config.progress and dist_info.is_main:
            print(f"training on the CPU with {threads} thread{'s' if threads > 1 else ''} ({why})", flush=True)
    seed_everything(train_config.seed)
    model = model_config.build().to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    total = train_config.steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, total, train_config.min_lr_fraction)
    )
    amp = bool(train_config.amp and supports_autocast(dev))
    use_fp16 = amp and not (dev.type == "cuda" and torch.cuda.is_bf16_supported())
    scaler = torch.amp.GradScaler(dev.type if dev.type == "cuda" else "cpu", enabled=use_fp16)

    history: dict = {"train": [], "val": []}
    best = -1.0
    step = 0
    run_path = Path(run_dir) if run_dir is not None else None
    last_path = run_path / "last.pt" if run_path else None
    best_path = run_path / "best.pt" if run_path else None
    if resume and last_path is not None and last_path.exists():
        state = load_training_state(last_path)
        saved = ModelConfig.from_dict(state["model_config"])
        if saved != model_config:
            raise ValueError(f"{last_path}: checkpoint is for {saved}, not {model_config}; use another run_dir")
        load_weights(model, state["model"], last_path)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, history, best = int(state["step"]), state["history"], float(state["best_dsc"])
    elif init_weights is not None:
        start = load_training_state(init_weights)
        if ModelConfig.from_dict(start["model_config"]) != model_config:
            raise ValueError(f"{init_weights}: the weights are of a network "
                             f"{ModelConfig.from_dict(start['model_config'])}, not {model_config}")
        load_weights(model, start["model"], init_weights)

    net = model
    if dist_info.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if train_config.compile == "on" or (train_config.compile == "auto" and dev.type == "cuda"):
        net = torch.compile(net)

    loss_function = LOSSES[train_config.loss]
    checkpoint_every = train_config.checkpoint_every or train_config.val_every
    end = min(total, stop_after) if stop_after is not None else total
    if train_config.num_workers > 0:
        batch_iter = (
            (s, d.to(dev, non_blocking=True), t.to(dev, non_blocking=True))
            for s, d, t in make_loader(batches, step, end, train_config.num_workers, dist_info.rank, dist_info.world)
        )
    else:
        batch_iter = ((s, *batches.batch(s, dev, dist_info.rank, dist_info.world)[:2]) for s in range(step, end))

    started = time.perf_counter()
    elapsed_before = history["train"][-1]["seconds"] if history["train"] else 0.0
    bar = tqdm(total=total, initial=step, desc="training", disable=not (train_config.progress and dist_info.is_main))
    model.train()
    finished = True
    for s, defective, target in batch_iter:
        with autocast_context(dev, amp):
            logits = net(defective)
        loss = loss_function(logits, target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step = s + 1
        seconds = elapsed_before + time.perf_counter() - started
        history["train"].append({"step": step, "loss": float(loss.detach()), "lr": optimizer.param_groups[0]["lr"],
                                 "seconds": seconds})
        bar.update(1)
        limit = train_config.time_limit_s
        out_of_time = limit is not None and time.perf_counter() - started > limit
        last_step = step == end or out_of_time
        if val is not None and (step % train_config.val_every == 0 or step == total):
            if dist_info.is_main:
                if hasattr(val, "score"):
                    metrics = val.score(model, dev, amp)
                else:
                    metrics = validate(model, val, dev, amp, train_config.val_batch_size, model_config.target)
                history["val"].append({"step": step, **metrics})
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", val_dsc=f"{metrics['dsc']:.3f}")
                if metrics["dsc"] > best:
                    best = metrics["dsc"]
                    if best_path is not None:
                        atomic_torch_save(_checkpoint(model, optimizer, scheduler, scaler, step, history, best,
                                                      model_config, train_config, extra_state), best_path)
            distributed.barrier()
        if run_path is not None and (step % checkpoint_every == 0 or last_step) and dist_info.is_main:
            atomic_torch_save(_checkpoint(model, optimizer, scheduler, scaler, step, history, best, model_config,
                                          train_config, extra_state), last_path)
            atomic_write_text(run_path / "history.json", json.dumps(history))
        if out_of_time and step < total:
            finished = False
            break
    bar.close()
    distributed.barrier()
    finished = finished and step >= total
    if best_path is not None and val is None and dist_info.is_main and last_path.exists():
        # Without validation the best checkpoint is the last one.
        atomic_torch_save(load_training_state(last_path), best_path)
    return TrainResult(model, model_config, history, step, run_path, best_path, last_path, finished)
