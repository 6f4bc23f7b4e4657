"""The augmentation study: configurations, resumable runs, the results table and its figures."""

from __future__ import annotations

import numpy as np
import pytest

from cranialkit.data.datasets import phantom_dataset
from cranialkit.preprocessing import stack_cases
from cranialkit.runner import image_is_blank
from cranialkit.study import StudyConfig, StudyRun, results_table, run_study, standard_configs
from cranialkit.viz.study import plot_class_heatmap, plot_study


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
            StudyRun("B", 0, _rows([0.5, float("inf") if False else 0.5]))]
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
