"""The augmentation study: configurations, resumable runs, the results table and its figures; the scarce-data
study on a real-layout dataset: nested training sets, every configuration end to end, resume after an interruption,
identity of the study folder, the learning curves and the benchmark script."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import skullfix_like

from cranialkit.data.datasets import load_dataset, phantom_dataset
from cranialkit.errors import OutputMismatchError
from cranialkit.preprocessing import stack_cases
from cranialkit.runner import image_is_blank
from cranialkit.study import (
    SCARCE_CONFIGURATIONS,
    SMOKE_PREPARATION,
    ScarceStudy,
    StudyConfig,
    StudyRun,
    difference_table,
    learning_curve_table,
    read_scarce_results,
    results_table,
    run_name,
    run_scarce_study,
    run_study,
    scarce_split,
    standard_configs,
)
from cranialkit.viz.study import plot_class_heatmap, plot_learning_curves, plot_study

REPO = Path(__file__).resolve().parents[1]


def test_standard_configs_follow_the_paper_comparison(tmp_path):
    generated = {"vae/random": tmp_path / "a", "vae/uds": tmp_path / "b", "ldm_vqvae/uds": tmp_path / "c"}
    names = [c.name for c in standard_configs(tmp_path / "reg", generated)]
    assert names[:3] == ["no augmentation", "geometric", "geometric + registration"]
    assert "geometric + vae/uds" in names and names[-1] == "geometric + registration + ldm_vqvae/uds"
    assert len(names) == 3 + len(generated) + 1
    without_registration = [c.name for c in standard_configs(None, generated)]
    assert not any("registration" in n for n in without_registration)


def _rows(dsc: list[float]) -> list[dict]:
    return [{"key": f"c/{i}", "case_id": str(i), "defect_class": "ab"[i % 2], "dsc": d, "bdsc": d, "hd95": 10 * (1 - d),
             "seconds": 0.1} for i, d in enumerate(dsc)]


def test_results_table_means_and_spread_over_seeds():
    runs = [StudyRun("A", 0, _rows([0.8, 0.6])), StudyRun("A", 1, _rows([1.0, 0.8])),
            StudyRun("B", 0, _rows([0.5, 0.5]))]
    table = results_table(runs)
    assert list(table.index) == ["A", "B"]
    assert table.loc["A", "dsc"] == pytest.approx(0.8) and table.loc["A", "dsc std"] == pytest.approx(0.1)
    assert table.loc["A", "DSC a"] == pytest.approx(0.9) and table.loc["A", "seeds"] == 2
    assert not image_is_blank(_png(plot_study(table))) and not image_is_blank(_png(plot_class_heatmap(table)))


def test_results_table_keeps_a_row_for_skipped_configurations():
    runs = [StudyRun("A", 0, _rows([0.8, 0.6]))]
    table = results_table(runs, skipped={"geometric + wgan_gp/random": "no valid generated sample"})
    assert list(table.index) == ["A", "geometric + wgan_gp/random"]
    skipped = table.loc["geometric + wgan_gp/random"]
    assert skipped["seeds"] == 0 and np.isnan(skipped["dsc"]) and "no valid" in skipped["note"]
    assert table.loc["A", "note"] == "" and table.loc["A", "dsc"] == pytest.approx(0.7)
    assert not image_is_blank(_png(plot_study(table))) and not image_is_blank(_png(plot_class_heatmap(table)))


def _png(figure) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


@pytest.mark.slow
def test_run_study_trains_evaluates_and_resumes(tmp_path):
    data = phantom_dataset(n_subjects=3, resolution=32, seed=5)
    splits = data.split(seed=0)
    shape = (16, 16, 16)
    train, val = stack_cases(splits["train"], shape), stack_cases(splits["val"], shape)
    test_cases = list(splits["test"])[:2]
    configs = [StudyConfig("none", "none"), StudyConfig("extra", "mild", (("more", str(data.root)),))]
    runs = run_study(configs, train, val, test_cases, tmp_path, seeds=(0,), steps=2, batch_size=2)
    assert [r.config for r in runs] == ["none", "extra"]
    assert all(len(r.rows) == 2 and 0.0 <= r.rows[0]["dsc"] <= 1.0 for r in runs)
    again = run_study(configs, train, val, test_cases, tmp_path, seeds=(0,), steps=2, batch_size=2)
    assert [r.rows for r in again] == [r.rows for r in runs], "a finished run must be read back, not retrained"
    assert np.isfinite(results_table(runs)["dsc"]).all()


# --------------------------------------------------------------------------------------------- scarce-data study

TINY = dict(val_subjects=2, recipe="smoke", steps=2, registration_pairs=4, **SMOKE_PREPARATION)


@pytest.fixture(scope="module")
def real_layout(tmp_path_factory) -> Path:
    """Six skulls in SkullFix's own layout on a non-cubic grid."""
    return skullfix_like(tmp_path_factory.mktemp("skullfix_like"), n_subjects=6)


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_scarce_split_sets_aside_validation_and_nests_the_training_sets(real_layout):
    dataset = load_dataset(real_layout)
    order, validation = scarce_split(dataset, 2, seed=0)
    assert len(validation) == 2 and len(order) == 4 and not set(order) & set(validation.subjects())
    assert sorted(order + validation.subjects()) == dataset.subjects()
    assert scarce_split(dataset, 2, seed=0)[0] == order, "the same seed gives the same order"
    assert validation.subjects() == dataset.split(seed=0, fractions=(4, 2, 0))["val"].subjects()
    other_order, other_validation = scarce_split(dataset, 2, seed=1)
    assert (other_order, other_validation.subjects()) != (order, validation.subjects())
    with pytest.raises(ValueError, match="cannot set 6 skulls aside"):
        scarce_split(dataset, 6)


def test_scarce_study_settings_are_checked_up_front():
    study = ScarceStudy("data", sizes=(10, 5, 10), seeds=(1, 0, 1), configurations=("geometric", "no augmentation"))
    assert study.sizes == (5, 10) and study.seeds == (1, 0)
    assert study.configurations == ("no augmentation", "geometric"), "kept in the canonical order"
    assert study.runs[:2] == [(5, "no augmentation", 1), (5, "geometric", 1)] and len(study.runs) == 8
    assert "sizes" not in study.settings() and study.settings()["coarse"]["steps"] == 6000
    assert ScarceStudy("data", steps=50).settings()["coarse"]["steps"] == 50
    with pytest.raises(ValueError, match="unknown.*no such"):
        ScarceStudy("data", configurations=("no such",))
    with pytest.raises(ValueError, match="registration needs at least 2"):
        ScarceStudy("data", sizes=(1, 5))
    assert ScarceStudy("data", sizes=(1,), configurations=("geometric",)).sizes == (1,)
    with pytest.raises(ValueError, match="recipe"):
        ScarceStudy("data", recipe="laptop")
    with pytest.raises(ValueError, match="extra_weight"):
        ScarceStudy("data", extra_weight=0)
    with pytest.raises(ValueError, match="no training recipe for 'gan'"):
        ScarceStudy("data", generator="gan")
    assert ScarceStudy("data", generator="gan", configurations=("geometric",)).generator == "gan", "not used"
    with pytest.raises(ValueError, match="sampler"):
        ScarceStudy("data", sampler="grid")
    assert run_name(5, "geometric + registration", 1) == "n005_geometric___registration_seed1"


@pytest.mark.slow
def test_scarce_study_runs_every_configuration_on_a_real_layout_dataset(real_layout, tmp_path):
    study = ScarceStudy(str(real_layout), sizes=(2, 3), seeds=(0,), **TINY)
    lines = []
    runs = run_scarce_study(study, tmp_path, progress=False, log=lines.append)
    assert [(r.size, r.config) for r in runs] == [(n, c) for c in SCARCE_CONFIGURATIONS for n in (2, 3)]
    order, validation = scarce_split(load_dataset(real_layout), 2)
    for run in runs:
        record = json.loads((tmp_path / "results" / f"{run_name(run.size, run.config, 0)}.json").read_text())
        assert record["training_subjects"] == order[: run.size], "nested training sets"
        if run.note:
            assert "no valid vae sample" in run.note and "generator" in run.config and run.size == 2
            continue
        assert [r["key"] for r in run.rows] == [c.key for c in validation], "scored on the validation skulls"
        assert all(0.0 <= r["dsc"] <= 1.0 and r["hd95"] > 0 for r in run.rows)
        assert not (tmp_path / "runs" / run_name(run.size, run.config, 0) / "last.pt").exists()
        assert (tmp_path / "runs" / run_name(run.size, run.config, 0) / "best.pt").is_file()
    trained = {(r.size, r.config) for r in runs if not r.note}
    assert {(3, "geometric + generator"), (3, "geometric + registration + generator")} <= trained
    registered = {n: load_dataset(tmp_path / "registration" / f"n00{n}").subjects() for n in (2, 3)}
    assert len(registered[2]) == 2 and len(registered[3]) == 4, "all 2 pairs; 4 of the 6 (the pair budget)"
    assert all(s.split("to")[0] in order[:3] and s.split("to")[1] in order[:3] for s in registered[3])
    assert (tmp_path / "pretraining" / "seed0" / "best.pt").is_file()
    by_name = {(r.size, r.config): r.rows for r in runs}
    assert _without_timing(by_name[2, "phantom pretraining + geometric"]) != _without_timing(by_name[2, "geometric"])
    assert sum("left" in line for line in lines) == len(runs) and lines[0].startswith("[1/12] 2 training skulls")

    curve = learning_curve_table(runs)
    assert len(curve) == 12 and set(curve["cases"]) == {2, 3} and (curve["seeds"] <= 1).all()
    row = curve[(curve["configuration"] == "geometric") & (curve["cases"] == 3)].iloc[0]
    assert row["dsc"] == pytest.approx(np.mean([r["dsc"] for r in by_name[3, "geometric"]]))
    assert row["dsc min"] == row["dsc max"] == row["dsc"]
    assert set(difference_table(curve)["configuration"]) <= set(SCARCE_CONFIGURATIONS) - {"geometric"}
    assert not image_is_blank(_png(plot_learning_curves(curve)))

    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").iterdir()}
    again = run_scarce_study(study, tmp_path, progress=False, log=None)
    assert [(r.size, r.config, r.rows) for r in again] == [(r.size, r.config, r.rows) for r in runs]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").iterdir()} == stamps, "nothing redone"
    with pytest.raises(OutputMismatchError, match="steps"):
        run_scarce_study(ScarceStudy(str(real_layout), sizes=(2,), seeds=(0,), **{**TINY, "steps": 3}), tmp_path,
                         progress=False, log=None)


def test_learning_curve_table_mean_and_range_over_seeds():
    runs = [StudyRun("geometric", 0, _rows([0.8, 0.6]), 5), StudyRun("geometric", 1, _rows([0.6, 0.6]), 5),
            StudyRun("geometric", 0, _rows([0.9, 0.9]), 10), StudyRun("no augmentation", 0, _rows([0.5, 0.5]), 5),
            StudyRun("no augmentation", 1, _rows([0.55, 0.55]), 5),
            StudyRun("geometric + generator", 0, [], 5, note="no valid vae sample among 4")]
    curve = learning_curve_table(runs)
    assert list(zip(curve["configuration"], curve["cases"])) == [
        ("no augmentation", 5), ("geometric", 5), ("geometric", 10), ("geometric + generator", 5)]
    row = curve.iloc[1]
    assert row["dsc"] == pytest.approx(0.65) and (row["dsc min"], row["dsc max"]) == pytest.approx((0.6, 0.7))
    assert row["seeds"] == 2 and row["hd95"] == pytest.approx(3.5)
    skipped = curve.iloc[3]
    assert skipped["seeds"] == 0 and np.isnan(skipped["dsc"]) and "no valid" in skipped["note"]
    differences = difference_table(curve)
    assert list(differences["configuration"]) == ["no augmentation"]
    assert differences.iloc[0]["difference"] == pytest.approx(-0.125) and differences.iloc[0]["beyond spread"]
    one_seed = difference_table(learning_curve_table(runs[:1] + runs[3:4]))  # no spread: a difference, unmarked
    assert one_seed.iloc[0]["difference"] == pytest.approx(-0.2) and not one_seed.iloc[0]["beyond spread"]
    figure = plot_learning_curves(curve)
    assert [ax.get_yscale() for ax in figure.axes] == ["linear", "log"], "HD95 from 1 to 5 mm: a log axis"
    assert not image_is_blank(_png(figure))
    close = plot_learning_curves(learning_curve_table(runs[:2]))  # HD95 within 2–4 mm: a linear axis reads it
    assert [ax.get_yscale() for ax in close.axes] == ["linear", "linear"]


@pytest.mark.slow
def test_scarce_study_interrupted_midway_resumes_to_the_same_results(real_layout, tmp_path, monkeypatch):
    import cranialkit.reconstruction.recipes as recipes

    study = ScarceStudy(str(real_layout), sizes=(2, 3), seeds=(0,), configurations=("geometric",),
                        **{**TINY, "steps": 4})
    reference = run_scarce_study(study, tmp_path / "uninterrupted", progress=False, log=None)

    real_train_stage = recipes.train_stage
    calls = []

    def interrupted_second_run(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the run of 3 skulls: two of its four steps, then the process "dies"
            real_train_stage(*args, **{**kwargs, "stop_after": 2})
            raise KeyboardInterrupt
        return real_train_stage(*args, **kwargs)

    out = tmp_path / "interrupted"
    monkeypatch.setattr(recipes, "train_stage", interrupted_second_run)
    with pytest.raises(KeyboardInterrupt):
        run_scarce_study(study, out, progress=False, log=None)
    monkeypatch.setattr(recipes, "train_stage", real_train_stage)
    finished = out / "results" / f"{run_name(2, 'geometric', 0)}.json"
    assert [p.name for p in (out / "results").iterdir()] == [finished.name]
    assert (out / "runs" / run_name(3, "geometric", 0) / "last.pt").is_file(), "the stopped run kept its checkpoint"
    before = finished.read_bytes()
    resumed = run_scarce_study(study, out, progress=False, log=None)
    assert finished.read_bytes() == before, "a finished run is not redone"
    assert [_without_timing(r.rows) for r in resumed] == [_without_timing(r.rows) for r in reference]


@pytest.mark.slow
def test_benchmark_script_killed_then_rerun_completes_and_writes_its_record(real_layout, tmp_path):
    spec = importlib.util.spec_from_file_location("benchmark_report", REPO / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    out, records = tmp_path / "study", tmp_path / "records"
    command = [sys.executable, str(REPO / "benchmarks" / "study_real.py"), "--data", str(real_layout), "--out",
               str(out), "--sizes", "2", "3", "--seeds", "0", "--configurations", "no augmentation", "geometric",
               "--recipe", "smoke", "--steps", "30", "--val-subjects", "2", "--json", str(records), "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "results" / f"{run_name(2, 'no augmentation', 0)}.json"
    deadline = time.time() + 240
    while not first.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert first.exists() and len(list((out / "results").iterdir())) < 4, "killed after the first run"
    before = first.read_bytes()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch threads: 1" in done.stdout and "runs left, about" in done.stdout and "0 runs left" in done.stdout
    assert first.read_bytes() == before and len(list((out / "results").iterdir())) == 4
    record = report.validate(json.loads((records / "study_real.json").read_text()))
    assert record["benchmark"] == "study_real" and record["figure"] == "benchmarks/study_real.png"
    assert record["tables"][0]["columns"] == ["configuration", "2 skulls", "3 skulls"]
    assert [row[0] for row in record["tables"][0]["rows"]] == ["no augmentation", "geometric"]
    assert str(tmp_path) not in record["command"] and "<study>" in record["command"]
    assert not image_is_blank((records / "study_real.png").read_bytes())
    assert len(read_scarce_results(out)) == 4
    noted = subprocess.run([*command, "--report-only", "--note", "Geometric is best."], env=env, capture_output=True,
                           text=True, timeout=300)
    assert noted.returncode == 0 and "wrote" in noted.stdout and "[1/" not in noted.stdout, "no run started"
    assert json.loads((records / "study_real.json").read_text())["notes"][0] == "Geometric is best."
    bad = subprocess.run([*command[:-4], "--steps", "31", "--json", str(records)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 1 and "steps" in bad.stderr and "Traceback" not in bad.stderr
