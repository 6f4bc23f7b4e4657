"""Figures of training, evaluation and augmentation: they draw what they are given and are never blank."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cranialkit.viz.augmentation import plot_changes, plot_samples, plot_transform  # noqa: E402
from cranialkit.viz.reconstruction import outcome_masks, plot_case_scores, plot_cases, plot_class_table  # noqa: E402
from cranialkit.viz.training import moving_average, plot_histories, plot_history  # noqa: E402


def pixels(fig) -> np.ndarray:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    plt.close(fig)
    buffer.seek(0)
    return plt.imread(buffer)


def not_blank(fig) -> bool:
    image = pixels(fig)
    return image[..., :3].std() > 0.05


def history(n=50, val=True):
    train = [{"step": s, "loss": 1 - s / (n + 1), "lr": 1e-3, "seconds": s * 0.1} for s in range(1, n + 1)]
    out = {"train": train, "val": []}
    if val:
        out["val"] = [{"step": s, "dsc": s / n, "bdsc": s / n, "hd95": 10 - s / n} for s in (10, 20, 30, 40, 50)]
    return out


def shell_case(shift=0):
    grid = np.indices((24, 24, 24)).astype(float) - 11.5
    r = np.sqrt((grid**2).sum(0))
    shell = (r < 10) & (r > 8)
    truth = shell & (grid[2] > 5)
    return shell & ~truth, truth, np.roll(truth, shift, axis=0)


def test_moving_average():
    np.testing.assert_allclose(moving_average(np.array([1.0, 3, 5, 7]), 2), [1, 2, 4, 6])
    np.testing.assert_allclose(moving_average(np.array([1.0, 2]), 1), [1, 2])


def test_history_figures_plot_the_data():
    fig = plot_history(history())
    loss_line = fig.axes[0].lines[1]
    assert len(loss_line.get_xdata()) == 50
    val_axes = fig.axes[1]
    assert [list(line.get_ydata()) for line in val_axes.lines][0] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert not_blank(fig)
    assert not_blank(plot_history(history(val=False)))
    assert not_blank(plot_histories({"none": history(), "mild": history(30)}))
    with pytest.raises(ValueError, match="no training steps"):
        plot_history({"train": [], "val": []})


def test_evaluation_figures():
    summary = [
        {"defect_class": "bilateral", "n": 3, "dsc": 0.8, "bdsc": 0.85, "hd95": 4.0},
        {"defect_class": "random_1", "n": 3, "dsc": 0.9, "bdsc": 0.92, "hd95": float("inf")},
        {"defect_class": "mean of classes", "n": 6, "dsc": 0.85, "bdsc": 0.885, "hd95": float("inf")},
    ]
    fig = plot_class_table(summary)
    bars = [p.get_width() for p in fig.axes[1].patches]
    assert bars[:2] == pytest.approx([0.8, 0.9])  # DSC bars of the two classes (summary rows left out)
    assert not_blank(fig)
    rows = [{"defect_class": "a", "dsc": 0.5, "bdsc": 0.6, "hd95": 3.0}, {"defect_class": "b", "dsc": 0.7,
                                                                           "bdsc": 0.7, "hd95": 2.0}]
    assert not_blank(plot_case_scores(rows, "hd95"))


def test_case_figure_colours_outcomes():
    defective, truth, prediction = shell_case(shift=2)
    masks = outcome_masks(defective, truth, prediction)
    assert (masks["prediction correct"] | masks["implant missed"]).sum() == truth.sum()
    assert not (masks["prediction correct"] & masks["error (extra voxels)"]).any()
    assert not_blank(plot_cases({"shifted": (defective, truth, prediction), "exact": shell_case(0)}))
    with pytest.raises(ValueError, match="shapes differ"):
        outcome_masks(defective, truth, prediction[:, :, :5])


def test_augmentation_figures():
    defective, truth, _ = shell_case()
    sample = {"defective": defective, "implant": truth}
    moved = {"defective": np.roll(defective, 3, 0), "implant": np.roll(truth, 3, 0)}
    assert not_blank(plot_transform(sample, moved, title="shift"))
    assert not_blank(plot_changes(sample, {"defective": defective & (np.indices(defective.shape)[0] > 12)}))
    assert not_blank(plot_samples([sample, moved], labels=["a", "b"], ncols=2))
    with pytest.raises(ValueError, match="labels"):
        plot_samples([sample], labels=["a", "b"])
    with pytest.raises(ValueError, match="implant"):
        plot_transform({"defective": defective}, sample)


def test_rim_close_up_shows_where_the_implant_meets_the_bone():
    """A tilted plate with a hole: the close-up is centred on the rim, so both bone and implant are in view."""
    from matplotlib.colors import to_rgb

    from cranialkit.viz.two_stage import rim_close_up
    from cranialkit.volume import Volume

    x, _, z = np.indices((64, 16, 64))
    plate = (np.abs(z - x) <= 2) & (x >= 4) & (x <= 60)
    implant = plate & (x >= 20) & (x <= 44)
    defective = Volume(plate & ~implant, (1.0, 1.0, 1.0))
    fig = rim_close_up(defective, implant, {"drawn": implant}, view="coronal", zoom_mm=12.0)
    image = fig.axes[0].images[0].get_array()
    colours = {tuple(np.round(pixel, 3)) for pixel in image.reshape(-1, 3)}
    assert tuple(np.round(to_rgb("#9a9a9a"), 3)) in colours  # defective skull in view
    assert tuple(np.round(to_rgb("#2ca02c"), 3)) in colours  # and the implant beside it
    plt.close(fig)
