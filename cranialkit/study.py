"""The augmentation study: one reconstruction network, one training budget, several augmentation configurations.

Taught in notebook 12_augmentation_study (the paper's main comparison, at a chosen scale).

A configuration is a list of training sources: the real (here: phantom) training cases, with or without geometric
augmentation, plus optional pre-made augmented datasets (registration-based, or sampled from a generator with the
random or the UDS sampler). Every configuration trains the same network for the same number of steps with each
seed, and is scored on the same held-out test cases (DSC, bDSC, HD95 at the original grid). Each finished
(configuration, seed) run is recorded in a manifest, so an interrupted study resumes where it stopped.

The scarce-data study (:class:`ScarceStudy`, :func:`run_scarce_study`) asks the paper's question on a real dataset:
with only 5, 10, 20 or 40 real training skulls, how much does each augmentation help? A fixed validation part of
the dataset scores every run at its original geometry and is never trained on; the training sets are nested (the 5
are among the 10, ...); registration-made and generated cases come from each training set alone; phantom
pretraining starts the same fine-tuning from a network trained on phantoms. Every (size, configuration, seed) run
trains the coarse stage of a reconstruction recipe (``cranialkit.reconstruction.recipes``) for the same number of
steps and writes its result atomically, so the study can be stopped and restarted at any time, and several
processes can share it. :func:`learning_curve_table` and ``cranialkit.viz.study.plot_learning_curves`` make the
table and the figure from whatever runs are finished.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cranialkit.checkpoints import checkpoint_name
from cranialkit.jobs import Manifest, atomic_write_text
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
    """The outcome of one configuration trained with one seed: test rows per case (and, in the scarce-data study,
    the number of real training skulls ``size`` and the run's wall time in seconds)."""

    config: str
    seed: int
    rows: list[dict] = field(default_factory=list)
    size: int | None = None
    seconds: float = 0.0
    note: str = ""


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


# --------------------------------------------------------------------------------------------- scarce-data study

SCARCE_CONFIGURATIONS = (
    "no augmentation",
    "geometric",
    "geometric + registration",
    "geometric + generator",
    "geometric + registration + generator",
    "phantom pretraining + geometric",
)
RESULTS_FOLDER = "results"
# The sets beside the real cases at their smallest (registration and generator at 16³, 300 generator steps, 2
# phantom subjects), with the "smoke" recipe: the tests and notebook 12 in smoke mode run every code path in seconds.
SMOKE_PREPARATION = {"registration_resolution": 16, "generator_resolution": 16, "generator_steps": 300,
                     "n_generated": 16, "pretrain_subjects": 2}


@dataclass(frozen=True)
class ScarceStudy:
    """What the scarce-data study trains and scores (see the module docstring).

    ``data``: a dataset folder or the name of a downloaded dataset. ``sizes``: real training skulls (subjects, each
    with all its defect classes; one case each in SkullFix) per point of the learning curve. ``val_subjects``: the
    skulls set aside for scoring (the dataset's split with ``split_seed``). ``recipe``/``steps``: the coarse stage of
    a recipe of ``cranialkit.reconstruction.recipes`` and the step budget of every run (default: the recipe's);
    ``resolution``: its grid (voxels per side; default: the recipe's).
    ``registration_pairs``: the most ordered pairs registered per training set (a seeded choice), at
    ``registration_resolution``³ voxels. ``generator``: the generative model trained on each training set at
    ``generator_resolution``³ with its recipe (``generator_steps`` replaces the recipe's steps), of which
    ``n_generated`` samples are drawn with ``sampler``. ``pretrain_subjects``: phantom subjects (× 6 defect classes)
    the pretraining learns from for ``pretrain_steps`` (default: ``steps``). ``extra_weight``: the sampling weight of
    each added source beside the real cases (weight 1).
    """

    data: str
    sizes: tuple[int, ...] = (5, 10, 20, 40)
    seeds: tuple[int, ...] = (0, 1)
    configurations: tuple[str, ...] = SCARCE_CONFIGURATIONS
    val_subjects: int = 10
    split_seed: int = 0
    recipe: str = "cpu"
    steps: int | None = None
    registration_pairs: int = 90
    registration_resolution: int = 64
    generator: str = "vae"
    generator_resolution: int = 32
    generator_steps: int | None = None
    sampler: str = "uds"
    n_generated: int = 100
    pretrain_subjects: int = 20
    pretrain_steps: int | None = None
    extra_weight: float = 1.0
    resolution: int | None = None

    def __post_init__(self) -> None:
        sizes = tuple(sorted({int(n) for n in self.sizes}))
        seeds = tuple(dict.fromkeys(int(s) for s in self.seeds))
        unknown = [c for c in self.configurations if c not in SCARCE_CONFIGURATIONS]
        if unknown or not self.configurations:
            raise ValueError(f"configurations: unknown {unknown or '(none given)'}; choose from "
                             f"{', '.join(SCARCE_CONFIGURATIONS)}")
        configurations = tuple(c for c in SCARCE_CONFIGURATIONS if c in self.configurations)
        if not sizes or sizes[0] < 1:
            raise ValueError(f"sizes: training set sizes must be >= 1 skull, got {list(self.sizes)}")
        if sizes[0] < 2 and any("registration" in c for c in configurations):
            raise ValueError(f"sizes: registration needs at least 2 training skulls (a pair), got {sizes[0]}")
        if not seeds:
            raise ValueError("seeds: give at least one training seed")
        for name in ("val_subjects", "registration_pairs", "registration_resolution", "generator_resolution",
                     "n_generated", "pretrain_subjects"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("steps", "generator_steps", "pretrain_steps"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1 (or None for the default), got {getattr(self, name)}")
        if not (math.isfinite(self.extra_weight) and self.extra_weight > 0):
            raise ValueError(f"extra_weight must be > 0, got {self.extra_weight}")
        if self.sampler not in ("random", "uds"):
            raise ValueError(f"sampler must be 'random' or 'uds', got {self.sampler!r}")
        if any("generator" in c for c in configurations):
            from cranialkit.generative.recipes import recipe

            try:
                recipe(self.generator)
            except KeyError as exc:
                raise ValueError(f"generator: {exc.args[0]}") from None
        object.__setattr__(self, "data", str(self.data))
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "configurations", configurations)
        self.coarse_settings()  # an unknown recipe fails here, not after hours

    def coarse_settings(self) -> dict:
        """The coarse-stage settings every run trains with (the recipe, with ``steps`` when given)."""
        from cranialkit.reconstruction.recipes import recipe

        return recipe(self.recipe, "coarse", steps=self.steps, resolution=self.resolution)

    def settings(self) -> dict:
        """Everything that changes a run's result (sizes, seeds and configurations only choose which runs are
        made: a study folder can be extended with more of them)."""
        fields = {k: v for k, v in asdict(self).items()
                  if k not in ("data", "sizes", "seeds", "configurations", "resolution")}  # resolution: in "coarse"
        return {**fields, "coarse": self.coarse_settings()}

    @property
    def runs(self) -> list[tuple[int, str, int]]:
        """Every (size, configuration, seed), seed by seed: a stopped study has whole learning curves first."""
        return [(n, c, s) for s in self.seeds for n in self.sizes for c in self.configurations]


def run_name(size: int, configuration: str, seed: int) -> str:
    """The name of one run's result and run folder, e.g. ``n005_geometric___registration_seed0``."""
    return f"n{int(size):03d}_{_slug(configuration)}_seed{int(seed)}"


def ground_truth_cases(data: str | os.PathLike):
    """The cases with a true implant of the dataset ``data`` (folder or name of a downloaded dataset)."""
    from cranialkit.data.datasets import Dataset, load_dataset

    full = load_dataset(data)
    dataset = Dataset(full.root, full.layout, [c for c in full.cases if c.has_ground_truth])
    if not dataset.cases:
        raise ValueError(f"{data}: no case with a ground-truth implant to train or score on")
    return dataset


def scarce_split(dataset, val_subjects: int, seed: int = 0) -> tuple[list[str], object]:
    """The training skulls in the order the nested training sets take them (the first ``n`` for size ``n``), and
    the validation part: ``val_subjects`` skulls of the dataset's seeded split (:meth:`Dataset.split`)."""
    subjects = dataset.subjects()
    if not 0 < val_subjects < len(subjects):
        raise ValueError(f"{dataset.root}: cannot set {val_subjects} skulls aside for validation out of "
                         f"{len(subjects)}")
    parts = dataset.split(seed=seed, fractions=(len(subjects) - val_subjects, val_subjects, 0))
    pool = parts["train"].subjects()
    order = [pool[i] for i in np.random.default_rng([seed, 1]).permutation(len(pool))]
    return order, parts["val"]


def read_scarce_results(out_dir: str | os.PathLike) -> list[StudyRun]:
    """Every finished run of a scarce-data study folder, by configuration, size and seed."""
    runs = []
    for path in sorted((Path(out_dir) / RESULTS_FOLDER).glob("*.json")):
        record = json.loads(path.read_text())
        runs.append(StudyRun(record["configuration"], int(record["seed"]), record["rows"], int(record["size"]),
                             float(record["seconds"]), record.get("note", "")))
    order = {c: i for i, c in enumerate(SCARCE_CONFIGURATIONS)}
    return sorted(runs, key=lambda r: (order.get(r.config, len(order)), r.size, r.seed))


def run_scarce_study(
    study: ScarceStudy,
    out_dir: str | os.PathLike,
    device: str = "auto",
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    on_run_done: Callable[[StudyRun], None] | None = None,
) -> list[StudyRun]:
    """Train and score every run of ``study`` that ``out_dir`` does not hold yet; returns the study's finished runs.

    ``out_dir`` records what made it (the dataset and its files, the split, :meth:`ScarceStudy.settings`): a folder
    made with other data or settings is refused, naming the difference. Each run's result is written atomically to
    ``results/<run name>.json`` (a run stopped midway resumes from its last checkpoint); registration-made and
    generated sets (``registration/``, ``generated/``) and the phantom pretraining (``pretraining/``) are made once,
    when a run first needs them. Processes sharing ``out_dir`` take different runs. ``log`` gets one line per run
    with the time left; ``on_run_done`` is called with each new result (e.g. to redraw the figure).
    """
    from cranialkit.jobs import claim_output, files_signature, unfinished

    out = Path(out_dir)
    say = log or (lambda text: None)
    dataset = ground_truth_cases(study.data)
    order, validation = scarce_split(dataset, study.val_subjects, study.split_seed)
    if study.sizes[-1] > len(order):
        raise ValueError(f"{study.data}: a training set of {study.sizes[-1]} skulls needs more than the {len(order)} "
                         f"left beside the {study.val_subjects} validation skulls; choose smaller sizes")
    identity = {"job": "scarce-data study", "data": str(Path(dataset.root).resolve()),
                "files": files_signature(dataset.root, [p for c in dataset.cases for p in c.paths()]),
                "validation": [c.key for c in validation], "training_order": order, "settings": study.settings()}
    claim_output(out, identity)
    manifest = Manifest(out / "manifest.jsonl")
    results = out / RESULTS_FOLDER
    prepared = _Preparation(study, dataset, order, out, device, progress, say)
    total = len(study.runs)

    def finished(item) -> bool:
        return (results / f"{run_name(*item)}.json").is_file()

    for size, configuration, seed in unfinished(study.runs, lambda item: run_name(*item), manifest, out, finished):
        done_before = read_scarce_results(out)
        count = sum(finished(item) for item in study.runs)
        say(f"[{count + 1}/{total}] {size} training skulls · {configuration} · seed {seed}")
        run = _scarce_run(study, prepared, size, configuration, seed, validation, out, device, progress)
        record = {"size": size, "configuration": configuration, "seed": seed, "rows": run.rows,
                  "seconds": run.seconds, "note": run.note, "training_subjects": order[:size]}
        atomic_write_text(results / f"{run_name(size, configuration, seed)}.json", json.dumps(record, indent=1))
        (out / "runs" / run_name(size, configuration, seed) / "last.pt").unlink(missing_ok=True)  # best.pt stays
        manifest.add({"key": run_name(size, configuration, seed), "dsc": _mean_of(run.rows, "dsc"),
                      "seconds": run.seconds})
        left = total - sum(finished(item) for item in study.runs)
        timings = [r.seconds for r in [*done_before, run] if not r.note]
        say(f"    {_summary(run)} in {run.seconds / 60:.1f} min; {left} run{'s' * (left != 1)} left"
            + (f", about {_duration(left * float(np.mean(timings)))}" if left and timings else ""))
        if on_run_done is not None:
            on_run_done(run)
    wanted = {(n, c, s) for n, c, s in study.runs}
    return [r for r in read_scarce_results(out) if (r.size, r.config, r.seed) in wanted]


class _Preparation:
    """The sets a run needs beside the real cases, made once per study folder (and per process remembered): the
    training set of each size, its registration-made and generated sets, and the phantom pretraining per seed."""

    def __init__(self, study: ScarceStudy, dataset, order: list[str], out: Path, device: str, progress: bool,
                 say: Callable[[str], None]):
        self.study, self.dataset, self.order, self.out = study, dataset, order, out
        self.device, self.progress, self.say = device, progress, say
        self.made: dict[str, object] = {}

    def training_set(self, size: int):
        return self.dataset.subset(subjects=self.order[:size])

    def _once(self, key: str, make: Callable[[], object]):
        """``make()`` once per study folder: under a claim that other processes wait for, timed in
        ``preparation.jsonl``."""
        from cranialkit.jobs import Manifest, WorkClaims

        if key not in self.made:
            with WorkClaims(self.out).hold(f"prepare-{key}", wait=True):
                started = time.perf_counter()
                self.made[key] = make()
                record = Manifest(self.out / "preparation.jsonl")
                if key not in record:
                    record.add({"key": key, "seconds": time.perf_counter() - started})
        return self.made[key]

    def registration(self, size: int) -> Path:
        """The registration-made set of the first ``size`` training skulls: a seeded choice of at most
        ``registration_pairs`` ordered pairs."""
        from cranialkit.augment.registration import augment_dataset, choose_pairs

        def make() -> Path:
            subset = self.training_set(size)
            folder = self.out / "registration" / f"n{size:03d}"
            pairs = choose_pairs(subset.subjects(), self.study.registration_pairs, seed=self.study.split_seed)
            self.say(f"    registering {len(pairs)} pairs of the {size} training skulls")
            augment_dataset(subset, folder, resolution=self.study.registration_resolution, pairs=pairs,
                            device=self.device, progress=self.progress)
            return folder

        return self._once(f"registration-n{size:03d}", make)

    def generated(self, size: int) -> Path | None:
        """The generated set of the generator trained on the first ``size`` training skulls (None when no sample
        is valid)."""
        from cranialkit.augment.generative import generate_dataset
        from cranialkit.generative.data import grid_spacing_mm, pairs_from_dataset
        from cranialkit.generative.recipes import train_or_load

        def make() -> Path | None:
            study = self.study
            subset = self.training_set(size)
            volumes = pairs_from_dataset(subset, study.generator_resolution)
            self.say(f"    training the {study.generator} generator on the {size} training skulls")
            model, _ = train_or_load(study.generator, volumes, steps=study.generator_steps, device=self.device,
                                     seed=study.split_seed, progress=self.progress)
            folder = self.out / "generated" / f"n{size:03d}"
            counts = generate_dataset(model, study.n_generated, folder, sampler=study.sampler, seed=study.split_seed,
                                      spacing_mm=grid_spacing_mm(subset, study.generator_resolution),
                                      device=self.device, progress=self.progress)
            self.say(f"    {counts['valid_fraction']:.0%} of {study.n_generated} generated samples valid")
            return folder if any((folder / "defective_skull").rglob("*.nrrd")) else None

        return self._once(f"generated-n{size:03d}", make)

    def pretrained(self, seed: int) -> Path:
        """The best checkpoint of the phantom pretraining with ``seed`` (the coarse recipe, geometric augmentation,
        ``pretrain_steps``)."""
        from cranialkit.data.datasets import phantom_dataset
        from cranialkit.reconstruction.recipes import train_stage

        def make() -> Path:
            study = self.study
            settings = study.coarse_settings()
            if study.pretrain_steps is not None:
                settings["steps"] = int(study.pretrain_steps)
            phantoms = phantom_dataset(n_subjects=study.pretrain_subjects, resolution=int(settings["resolution"]),
                                       seed=study.split_seed)
            self.say(f"    pretraining on {len(phantoms)} phantom cases for {settings['steps']} steps (seed {seed})")
            result = train_stage("coarse", settings, phantoms, None, self.out / "pretraining" / f"seed{seed}",
                                 seed=seed, device=self.device, progress=self.progress)
            return result.best_path

        return self._once(f"pretraining-seed{seed}", make)


def _scarce_run(study: ScarceStudy, prepared: _Preparation, size: int, configuration: str, seed: int, validation,
                out: Path, device: str, progress: bool) -> StudyRun:
    """Train one configuration on the first ``size`` training skulls with ``seed`` and score it on ``validation``
    at the original geometry."""
    from cranialkit.data.datasets import load_dataset
    from cranialkit.reconstruction.evaluation import evaluate_cases
    from cranialkit.reconstruction.inference import Reconstructor
    from cranialkit.reconstruction.recipes import train_stage

    settings = study.coarse_settings()
    if configuration == "no augmentation":
        settings["augment"] = "none"
    mix = []
    if "registration" in configuration:
        mix.append(("registration", load_dataset(prepared.registration(size)), study.extra_weight))
    if "generator" in configuration:
        folder = prepared.generated(size)
        if folder is None:
            return StudyRun(configuration, seed, [], size, 0.0, f"no valid {study.generator} sample among "
                                                                f"{study.n_generated}")
        mix.append((study.generator, load_dataset(folder), study.extra_weight))
    init = prepared.pretrained(seed) if configuration.startswith("phantom pretraining") else None
    result = train_stage("coarse", settings, prepared.training_set(size), None,
                         out / "runs" / run_name(size, configuration, seed), mix=mix, init_weights=init, seed=seed,
                         device=device, progress=progress)
    train_seconds = result.history["train"][-1]["seconds"] if result.history["train"] else 0.0
    evaluating = time.perf_counter()
    reconstructor = Reconstructor.from_checkpoint(result.best_path, device=device)
    rows = evaluate_cases(reconstructor, validation.cases, progress=progress)
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
    seconds = train_seconds + time.perf_counter() - evaluating
    return StudyRun(configuration, seed, rows, size, seconds)


def _mean_of(rows: list[dict], metric: str) -> float | None:
    values = [r[metric] for r in rows if r.get(metric) is not None and math.isfinite(r[metric])]
    return float(np.mean(values)) if values else None


def _summary(run: StudyRun) -> str:
    if run.note:
        return f"skipped ({run.note})"
    dsc, hd95 = _mean_of(run.rows, "dsc"), _mean_of(run.rows, "hd95")
    return f"DSC {dsc:.3f}, HD95 {hd95:.1f} mm" if dsc is not None and hd95 is not None else "no score"


def _duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def learning_curve_table(runs: Sequence[StudyRun]):
    """A pandas DataFrame, one row per (configuration, training skulls): the mean over seeds of each seed's mean
    DSC, bDSC and HD95 (mm) over the validation cases, their minimum and maximum over seeds (the spread drawn in the
    figure) and the number of seeds. An infinite HD95 (an empty prediction) counts as missing; a configuration that
    could not be trained keeps its rows with the reason in ``note``."""
    import pandas as pd

    records = []
    for run in runs:
        record = {"configuration": run.config, "cases": run.size, "seed": run.seed, "note": run.note}
        for metric in METRICS:
            record[metric] = _mean_of(run.rows, metric) if run.rows else None
        records.append(record)
    columns = ["configuration", "cases", "seeds", *[f"{m}{s}" for m in METRICS for s in ("", " min", " max")], "note"]
    if not records:
        return pd.DataFrame(columns=columns)
    per_seed = pd.DataFrame(records)
    for metric in METRICS:
        per_seed[metric] = pd.to_numeric(per_seed[metric], errors="coerce")
    rows = []
    for (configuration, size), part in per_seed.groupby(["configuration", "cases"], sort=False):
        scored = part.dropna(subset=["dsc"])
        row = {"configuration": configuration, "cases": int(size), "seeds": len(scored),
               "note": "; ".join(sorted(set(part["note"]) - {""}))}
        for metric in METRICS:
            values = scored[metric].dropna()
            row[metric] = values.mean() if len(values) else np.nan
            row[f"{metric} min"] = values.min() if len(values) else np.nan
            row[f"{metric} max"] = values.max() if len(values) else np.nan
        rows.append(row)
    table = pd.DataFrame(rows, columns=columns)
    order = {c: i for i, c in enumerate(dict.fromkeys([*SCARCE_CONFIGURATIONS, *table["configuration"]]))}
    table = table.sort_values(["configuration", "cases"], key=lambda c: c.map(order) if c.name == "configuration"
                              else c, kind="stable")
    return table.reset_index(drop=True)


def difference_table(curve, reference: str = "geometric", metric: str = "dsc"):
    """Each configuration's mean ``metric`` minus the ``reference`` configuration's, per number of training skulls,
    and whether the two ranges over seeds are apart (``beyond spread``): with few seeds the honest test of a
    difference. One seed has no spread, so a difference from it is never marked."""
    import pandas as pd

    base = curve[curve["configuration"] == reference].set_index("cases")
    rows = []
    for _, row in curve[curve["configuration"] != reference].iterrows():
        if row["cases"] not in base.index or not np.isfinite(row[metric]):
            continue
        other = base.loc[row["cases"]]
        apart = (min(row["seeds"], other["seeds"]) >= 2
                 and (row[f"{metric} min"] > other[f"{metric} max"] or row[f"{metric} max"] < other[f"{metric} min"]))
        rows.append({"configuration": row["configuration"], "cases": int(row["cases"]),
                     "difference": row[metric] - other[metric], "beyond spread": bool(apart)})
    return pd.DataFrame(rows, columns=["configuration", "cases", "difference", "beyond spread"])
