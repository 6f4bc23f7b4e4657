"""Evaluation of a trained network on a test split: a per-case table and means per defect class.

Taught in notebook 10_unet_training.

Every case is reconstructed at its original geometry (``Reconstructor.reconstruct``) and compared with its true
implant there, with the AutoImplant metrics of ``cranialkit.metrics``: DSC, boundary DSC (10 mm around the
defective skull) and HD95 in mm. With ``out_dir`` the predicted implants are saved as NRRD in the SkullBreak layout
(``implant/<class>/<id>.nrrd``) together with a manifest, so an interrupted evaluation resumes, and the table is
written as ``metrics.csv``; ``identity.json`` says which network and cases made them.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from cranialkit.jobs import Manifest, atomic_write_text

METRICS = ("dsc", "bdsc", "hd95")


def evaluate_cases(
    reconstructor,
    cases: Iterable,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> list[dict]:
    """Reconstruct and score every case that has a true implant; one row per case.

    Rows: ``key``, ``case_id``, ``defect_class``, ``dsc``, ``bdsc``, ``hd95`` (mm) and ``seconds`` (inference
    time, preprocessing to original grid). Cases without ground truth are reconstructed (and saved) but get no
    metrics (NaN). Each case's volumes must share one grid and its implant must not overlap its defective skull
    (:func:`~cranialkit.data.datasets.check_case_volumes`).

    ``out_dir`` records what made it (the reconstructor's settings and weights, the cases and their files:
    :func:`cranialkit.jobs.claim_output`); resuming it with another network or other cases is refused unless
    ``overwrite`` starts over. Several processes may evaluate into one ``out_dir``: each case is done once.
    """
    from cranialkit.data.datasets import check_case_volumes
    from cranialkit.io import write_volume
    from cranialkit.jobs import claim_output, files_signature, identity_of, unfinished
    from cranialkit.metrics import evaluate_implant

    cases = list(cases)
    if not cases:
        raise ValueError("evaluate_cases: no cases to evaluate")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        identity = {"job": "evaluate", "reconstructor": identity_of(reconstructor), "cases": [c.key for c in cases],
                    "files": files_signature("/", [p for c in cases for p in c.paths()])}
        claim_output(out, identity, overwrite=overwrite)
    manifest = Manifest(out / "manifest.jsonl") if out is not None else None
    computed = {}
    for case in unfinished(tqdm(cases, desc="evaluating", disable=not progress), lambda c: c.key, manifest, out):
        defective = case.defective
        started = time.perf_counter()
        implant = reconstructor.reconstruct(defective)
        seconds = time.perf_counter() - started
        truth = case.implant
        if truth is not None:
            check_case_volumes(case, defective, implant=truth if case.implant_path is not None else None)
            scores = evaluate_implant(implant.array, truth.array, defective.array, defective.spacing)
        else:
            scores = {k: math.nan for k in METRICS}
        row = {"key": case.key, "case_id": case.case_id, "defect_class": case.defect_class,
               **{k: float(scores[k]) for k in METRICS}, "seconds": seconds}
        if out is not None:
            write_volume(implant, out / "implant" / case.defect_class / f"{case.case_id}.nrrd")
            manifest.add(row)
        computed[case.key] = row
    done = {r["key"]: r for r in manifest.records()} if manifest is not None else computed
    rows = [{k: done[c.key][k] for k in ("key", "case_id", "defect_class", *METRICS, "seconds")} for c in cases]
    if out is not None:
        atomic_write_text(out / "metrics.csv", rows_to_csv(rows))
    return rows


def _mean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def summarize_by_class(rows: list[dict]) -> list[dict]:
    """Means per defect class (``n``, ``dsc``, ``bdsc``, ``hd95``), then two summary rows: ``"mean of classes"``
    (every class weighs the same) and ``"all cases"``. HD95 is infinite for a class with an empty prediction."""
    classes = sorted({r["defect_class"] for r in rows})
    summary = []
    for name in classes:
        members = [r for r in rows if r["defect_class"] == name]
        means = {k: _mean([r[k] for r in members]) for k in METRICS}
        summary.append({"defect_class": name, "n": len(members), **means})
    summary.append({"defect_class": "mean of classes", "n": len(rows),
                    **{k: _mean([s[k] for s in summary]) for k in METRICS}})
    summary.append({"defect_class": "all cases", "n": len(rows), **{k: _mean([r[k] for r in rows]) for k in METRICS}})
    return summary


def rows_to_csv(rows: list[dict]) -> str:
    """The rows as CSV text (header from the first row's keys)."""
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def format_table(rows: list[dict], digits: int = 3) -> str:
    """A plain-text table of rows (dicts with the same keys) for printing in a notebook or a terminal."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])

    def cell(value) -> str:
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    cells = [[cell(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    return "\n".join(lines)


def best_and_worst(rows: list[dict], n: int = 2, metric: str = "dsc") -> tuple[list[dict], list[dict]]:
    """The ``n`` best and ``n`` worst rows by ``metric`` (cases without a score are left out)."""
    scored = [r for r in rows if not math.isnan(r[metric])]
    ordered = sorted(scored, key=lambda r: r[metric], reverse=metric != "hd95")
    return ordered[:n], ordered[::-1][:n]
