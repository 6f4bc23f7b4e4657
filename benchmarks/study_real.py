"""The scarce-data study on real skulls: a learning curve per augmentation configuration (resumable; hours on a CPU).

    python benchmarks/study_real.py --data <dataset folder or name> --sizes 5 10 20 40 --seeds 0 1 --steps 3000 \\
        --out <study folder> [--threads 1]

Trains the coarse reconstruction stage (``--recipe``, default "cpu") on the first 5, 10, 20, 40 training skulls
of the dataset with every configuration (none, geometric, + registration, + generator, + both, phantom
pretraining) and seed, for the same number of steps, and scores each run at the original geometry on validation
skulls that no run trains on (:func:`cranialkit.study.run_scarce_study`). Every finished run is a file in
``<study folder>/results/``: stop the job at any time (Ctrl-C, ``kill``) and run the same command to continue; a
study folder made with other data or settings is refused. More sizes or seeds can be added to a folder later, and
two processes given the same ``--out`` share its runs.

After every finished run (and with ``--report-only``, without training) the record
``docs/benchmarks/study_real.json`` and its figure ``study_real.png`` are written from all results in the folder
(``--json`` chooses another folder); ``make bench-report`` puts them on the benchmarks page. ``--note "..."``
(repeatable) heads the record's notes with what the curves show.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import RECORDS, command_line, describe_machine, make_record, table, validate  # noqa: E402

BENCHMARK = "study_real"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from cranialkit.study import SCARCE_CONFIGURATIONS, ScarceStudy

    defaults = ScarceStudy("(data)")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset folder (SkullFix/SkullBreak layout) or name")
    parser.add_argument("--out", required=True, type=Path, help="study folder (results, run checkpoints)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(defaults.sizes), help="training skulls")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    parser.add_argument("--steps", type=int, default=None, help="training steps of every run (default: the recipe's)")
    parser.add_argument("--recipe", default=defaults.recipe, help="coarse-stage recipe: cpu, gpu or smoke")
    parser.add_argument("--resolution", type=int, default=None, help="coarse grid, voxels per side (default: the "
                        "recipe's)")
    parser.add_argument("--configurations", nargs="+", default=list(SCARCE_CONFIGURATIONS),
                        choices=SCARCE_CONFIGURATIONS, metavar="NAME", help="quote each name (default: all)")
    parser.add_argument("--val-subjects", type=int, default=defaults.val_subjects, help="skulls set aside to score")
    parser.add_argument("--split-seed", type=int, default=defaults.split_seed)
    parser.add_argument("--registration-pairs", type=int, default=defaults.registration_pairs,
                        help="at most this many ordered pairs registered per training set")
    parser.add_argument("--registration-resolution", type=int, default=defaults.registration_resolution)
    parser.add_argument("--generator", default=defaults.generator)
    parser.add_argument("--generator-resolution", type=int, default=defaults.generator_resolution)
    parser.add_argument("--generator-steps", type=int, default=None, help="default: the generator's recipe")
    parser.add_argument("--sampler", default=defaults.sampler, choices=("random", "uds"))
    parser.add_argument("--n-generated", type=int, default=defaults.n_generated)
    parser.add_argument("--pretrain-subjects", type=int, default=defaults.pretrain_subjects)
    parser.add_argument("--pretrain-steps", type=int, default=None, help="default: --steps")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of torch (default 1)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=RECORDS, help="folder of the benchmark record and figure")
    parser.add_argument("--report-only", action="store_true", help="write the record from the results; no training")
    parser.add_argument("--note", action="append", default=[], help="a sentence for the record's notes (repeatable): "
                        "what the curves show")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(),
                        help="progress bars (default: on a terminal)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


def study_from(args: argparse.Namespace):
    from cranialkit.study import ScarceStudy

    return ScarceStudy(args.data, sizes=tuple(args.sizes), seeds=tuple(args.seeds),
                       configurations=tuple(args.configurations), val_subjects=args.val_subjects,
                       split_seed=args.split_seed, recipe=args.recipe, steps=args.steps,
                       registration_pairs=args.registration_pairs,
                       registration_resolution=args.registration_resolution, generator=args.generator,
                       generator_resolution=args.generator_resolution, generator_steps=args.generator_steps,
                       sampler=args.sampler, n_generated=args.n_generated, pretrain_subjects=args.pretrain_subjects,
                       pretrain_steps=args.pretrain_steps, resolution=args.resolution)


def _cell(mean: float, low: float, high: float, seeds: int, digits: int) -> str:
    """``mean [low–high]`` over the seeds (the mean alone for one seed, a dash for none)."""
    if seeds == 0 or mean != mean:  # NaN: no scored seed
        return "—"
    return f"{mean:.{digits}f}" if seeds == 1 else f"{mean:.{digits}f} [{low:.{digits}f}–{high:.{digits}f}]"


def write_report(args: argparse.Namespace, study, argv: list[str]) -> Path | None:
    """The benchmark record and its figure from every result in the study folder (None when there is none)."""
    import json

    import matplotlib.pyplot as plt

    from cranialkit.jobs import Manifest, atomic_path, atomic_write_text
    from cranialkit.study import difference_table, learning_curve_table, read_scarce_results
    from cranialkit.viz.study import plot_learning_curves

    runs = read_scarce_results(args.out)
    if not runs:
        return None
    curve = learning_curve_table(runs)
    sizes = sorted({int(n) for n in curve["cases"]})
    names = list(dict.fromkeys(curve["configuration"]))

    def metric_table(metric: str, title: str, digits: int) -> dict:
        rows = []
        for name in names:
            part = curve[curve["configuration"] == name].set_index("cases")
            cells = [_cell(*part.loc[n, [metric, f"{metric} min", f"{metric} max", "seeds"]], digits)
                     if n in part.index else "not run" for n in sizes]
            rows.append([name, *cells])
        return table(title, ["configuration", *[f"{n} skulls" for n in sizes]], rows)

    tables = [metric_table("dsc", "DSC on the validation skulls: mean over seeds [range] (HD95: the figure)", 3)]
    differences = difference_table(curve)
    if len(differences):
        rows = []
        for name in dict.fromkeys(differences["configuration"]):
            part = differences[differences["configuration"] == name].set_index("cases")
            rows.append([name, *[f"{part.loc[n, 'difference']:+.3f}" + (" *" if part.loc[n, "beyond spread"] else "")
                                 if n in part.index else "—" for n in sizes]])
        tables.append(table("Mean DSC minus that of geometric augmentation alone", ["configuration",
                            *[f"{n} skulls" for n in sizes]], rows,
                            note="* the two ranges over seeds do not overlap (marked only where both have two seeds "
                                 "or more)."))
    figure = plot_learning_curves(curve, title=f"{Path(study.data).name}: how many real skulls is each augmentation "
                                  f"worth? (coarse stage, {study.coarse_settings()['resolution']}³)")
    with atomic_path(args.json / f"{BENCHMARK}.png", suffix=".png") as temporary:  # processes may share a study
        figure.savefig(temporary, dpi=110)
    plt.close(figure)
    preparation = Manifest(args.out / "preparation.jsonl").records()
    hours = (sum(r.seconds for r in runs) + sum(r["seconds"] for r in preparation)) / 3600
    identity = json.loads((args.out / "identity.json").read_text())
    settings = identity["settings"]
    skipped = sorted({f"{r.config} with {r.size} skulls ({r.note})" for r in runs if r.note})
    done = (f"All {len(runs)} runs of this command finished" if len(runs) == len(study.runs)
            else f"{len(runs)} of {len(study.runs)} runs of this command finished so far")
    notes = [f"{done}: {hours:.1f} h of compute, the sum of the wall times of every run and preparation (training, "
             f"scoring, registration, generator and pretraining) with {args.threads} thread(s) each.",
             f"Dataset {Path(identity['data']).name}: {len(identity['training_order'])} training skulls (nested sets, "
             f"the first n of a seeded order), {len(identity['validation'])} validation skulls scored at their "
             f"original geometry, never trained on.",
             f"Coarse stage: {settings['coarse']['resolution']}³, network {settings['coarse']['size']}, "
             f"{settings['coarse']['steps']} steps of batch {settings['coarse']['batch_size']} for every run, "
             f"lr {settings['coarse']['lr']}, geometric preset {settings['coarse']['augment']!r}; the last weights are "
             f"scored.",
             f"Registration: at most {settings['registration_pairs']} ordered pairs of the training skulls at "
             f"{settings['registration_resolution']}³; generator: {settings['generator']} trained on the training "
             f"skulls at {settings['generator_resolution']}³, {settings['n_generated']} samples "
             f"({settings['sampler']}), the valid ones kept; added sources weigh {settings['extra_weight']} each "
             f"beside the real cases (1).",
             f"Phantom pretraining: {settings['pretrain_subjects']} phantom subjects × 6 defect classes, then the same "
             f"fine-tuning as 'geometric'."]
    if skipped:
        notes.append("Not trained: " + "; ".join(skipped) + ".")
    notes = [*args.note, *notes]
    command = command_line("benchmarks/study_real.py", argv, left_out={"--note": 1, "--report-only": 0})
    record = make_record(BENCHMARK, "The scarce-data study on real skulls (notebook 12's learning curve)", tables,
                         threads=args.threads, device=describe_machine(_device_name(args.device)), command=command,
                         notes=notes, figure=f"benchmarks/{BENCHMARK}.png",
                         settings=settings, hours=round(hours, 2),
                         curve=json.loads(curve.to_json(orient="records")))
    path = args.json / f"{BENCHMARK}.json"
    validate(record, str(path))
    return atomic_write_text(path, json.dumps(record, indent=1, ensure_ascii=False) + "\n")


def _report_now(args: argparse.Namespace, study, argv: list[str]) -> None:
    """The record after a finished run; a record that cannot be written stops no training."""
    try:
        write_report(args, study, argv)
    except OSError as exc:
        print(f"warning: the record was not written ({exc}); the results are safe in {args.out}", flush=True)


def _device_name(device: str) -> str:
    from cranialkit.config import device as pick_device

    return str(pick_device(device))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the trainer takes its CPU threads from here
    import torch

    from cranialkit.errors import CranialkitError
    from cranialkit.study import read_scarce_results, run_scarce_study

    torch.set_num_threads(args.threads)
    try:
        study = study_from(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"scarce-data study of {args.data} in {args.out}: {len(study.runs)} runs ({len(study.sizes)} sizes × "
          f"{len(study.configurations)} configurations × {len(study.seeds)} seeds), torch threads: "
          f"{torch.get_num_threads()}", flush=True)
    if not args.report_only:
        started = time.perf_counter()
        try:
            run_scarce_study(study, args.out, device=args.device, progress=args.progress,
                             log=lambda line: print(line, flush=True),
                             on_run_done=lambda run: _report_now(args, study, argv))
        except KeyboardInterrupt:
            print(f"stopped after {(time.perf_counter() - started) / 60:.1f} min; "
                  f"{len(read_scarce_results(args.out))} runs are finished in {args.out}; the same command resumes",
                  flush=True)
            return 130
        except (CranialkitError, ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    path = write_report(args, study, argv)
    print(f"wrote {path} and its figure" if path else f"no finished run in {args.out} yet", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
