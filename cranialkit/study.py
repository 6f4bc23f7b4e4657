"""The augmentation study: one reconstruction network, one training budget, several augmentation configurations.

Taught in notebook 12_augmentation_study (the paper's main comparison, at a chosen scale).

A configuration is a list of training sources: the real (here: phantom) training cases, with or without geometric
augmentation, plus optional pre-made augmented datasets (registration-based, or sampled from a generator with the
random or the UDS sampler). Every configuration trains the same network for the same number of steps with each
seed, and is scored on the same held-out test cases (DSC, bDSC, HD95 at the original grid). Each finished
(configuration, seed) run is recorded in a manifest, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cranialkit.checkpoints import checkpoint_name
from cranialkit.jobs import Manifest
from cranialkit.reconstruction.evaluation import METRICS


@dataclass(frozen=True)
class StudyConfig:
    """One row of the study: a name, the geometric preset, and extra datasets (name → folder) with a weight each."""

    name: str
    geometric: str = "mild"
    extra: tuple[tuple[str, str], ...] = ()  # (source name, dataset folder)
    extra_weight: float = 1.0  # sampling weight of each extra source (the real cases have weight 1)


@dataclass
class StudyRun:
    """The outcome of one configuration trained with one seed: test rows per case."""

    config: str
    seed: int
    rows: list[dict] = field(default_factory=list)


def standard_configs(
    registration_dir: str | os.PathLike | None,
    generated_dirs: dict[str, str | os.PathLike],
    combined_generator: str | None = "ldm_vqvae/uds",
    geometric: str = "mild",
) -> list[StudyConfig]:
    """The paper's comparison: none; geometric; geometric + registration; geometric + each generated dataset
    (``generated_dirs``: "vae/random" → folder, ...); geometric + registration + ``combined_generator``."""
    configs = [StudyConfig("no augmentation", "none"), StudyConfig("geometric", geometric)]
    if registration_dir is not None:
        configs.append(StudyConfig("geometric + registration", geometric, (("registration", str(registration_dir)),)))
    for name, folder in generated_dirs.items():
        configs.append(StudyConfig(f"geometric + {name}", geometric, ((name, str(folder)),)))
    if registration_dir is not None and combined_generator in generated_dirs:
        configs.append(
            StudyConfig(
                f"geometric + registration + {combined_generator}",
                geometric,
                (
                    ("registration", str(registration_dir)),
                    (combined_generator, str(generated_dirs[combined_generator])),
                ),
            )
        )
    return configs


def run_study(
    configs: list[StudyConfig],
    train_arrays,
    val_arrays,
    test_cases,
    out_dir: str | os.PathLike,
    seeds: tuple[int, ...] = (0, 1),
    steps: int = 150,
    batch_size: int = 4,
    lr: float = 3e-3,
    model_size: str = "tiny",
    device: str = "auto",
    progress: bool = False,
) -> list[StudyRun]:
    """Train and evaluate every configuration with every seed (resumable); returns one :class:`StudyRun` each.

    ``train_arrays``/``val_arrays``: ``CaseArrays`` of the real training/validation cases on the network grid;
    ``test_cases``: cases (with ground truth) scored at their original geometry.
    """
    from cranialkit.augment.geometric import preset
    from cranialkit.data.datasets import load_dataset
    from cranialkit.preprocessing import stack_cases
    from cranialkit.reconstruction.data import source_from_arrays
    from cranialkit.reconstruction.evaluation import evaluate_cases
    from cranialkit.reconstruction.inference import Reconstructor
    from cranialkit.reconstruction.network import ModelConfig
    from cranialkit.reconstruction.trainer import TrainConfig, train

    out = Path(out_dir)
    manifest = Manifest(out / "study_manifest.jsonl")
    shape = tuple(int(s) for s in np.asarray(train_arrays.defective).shape[1:])
    extra_cache: dict[str, object] = {}
    runs = []
    for config in configs:
        for seed in seeds:
            key = f"{config.name}|seed={seed}|steps={steps}|{model_size}|{shape[0]}"
            if key in manifest:
                runs.append(StudyRun(config.name, seed, manifest.records()[_index(manifest, key)]["rows"]))
                continue
            augment = preset(config.geometric)
            sources = [source_from_arrays("real", train_arrays, augment=augment)]
            for name, folder in config.extra:
                if folder not in extra_cache:
                    extra_cache[folder] = stack_cases(load_dataset(folder), shape)
                sources.append(source_from_arrays(name, extra_cache[folder], weight=config.extra_weight,
                                                  augment=augment))
            settings = {"configuration": config.name, "geometric": config.geometric, "extra": config.extra,
                        "extra_weight": config.extra_weight, "size": model_size, "batch_size": batch_size, "lr": lr,
                        "seed": seed}
            run_dir = out / "runs" / checkpoint_name(f"study_{_slug(config.name)}", settings, shape[0], steps)
            train_config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, val_every=max(1, steps // 2),
                                       seed=seed, device=device, progress=progress)
            result = train(ModelConfig(model_size, "implant", shape), train_config, sources, val_arrays, run_dir)
            reconstructor = Reconstructor.from_checkpoint(result.best_path, device=device)
            rows = evaluate_cases(reconstructor, test_cases, progress=False)
            rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
            manifest.add({"key": key, "config": config.name, "seed": seed, "rows": rows})
            runs.append(StudyRun(config.name, seed, rows))
    return runs


def _index(manifest: Manifest, key: str) -> int:
    return [r["key"] for r in manifest.records()].index(key)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")


def results_table(runs: list[StudyRun], skipped: dict[str, str] | None = None):
    """A pandas DataFrame, one row per configuration: mean ± std over seeds of the per-seed mean DSC, bDSC, HD95
    (mm), and the mean DSC per defect class. Infinite HD95 (an empty prediction) counts as missing.

    ``skipped`` maps configurations that were not trained to the reason (e.g. a generator without one valid
    sample): they get a row of missing values, 0 seeds and the reason in a ``note`` column, so that the table still
    has a row for every configuration of the study."""
    import pandas as pd

    records = []
    for run in runs:
        frame = pd.DataFrame(run.rows)
        record = {"configuration": run.config, "seed": run.seed}
        for metric in METRICS:
            values = pd.to_numeric(frame[metric], errors="coerce").replace([np.inf, -np.inf], np.nan)
            record[metric] = values.mean()
        for defect_class, part in frame.groupby("defect_class"):
            record[f"DSC {defect_class}"] = pd.to_numeric(part["dsc"], errors="coerce").mean()
        records.append(record)
    per_seed = pd.DataFrame(records)
    order = list(dict.fromkeys(r.config for r in runs))
    grouped = per_seed.drop(columns="seed").groupby("configuration", sort=False)
    table = grouped.mean()
    for metric in METRICS:
        table[f"{metric} std"] = grouped[metric].std(ddof=0)
    table["seeds"] = grouped.size()
    columns = [c for m in METRICS for c in (m, f"{m} std")]
    columns += [c for c in table.columns if c.startswith("DSC ")] + ["seeds"]
    table = table.loc[order, columns]
    if skipped:
        table["note"] = ""
        for name, reason in skipped.items():
            table.loc[name] = pd.Series({"seeds": 0, "note": f"not trained: {reason}"})
    return table
