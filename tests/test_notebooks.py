"""Every notebook in notebooks/: committed clean, built on the one skeleton of docs/DESIGN.md ("Notebook
conventions"), and it runs in smoke mode.

The notebooks run in order and share the test session's data directory, as they do in the main job.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import nbformat
import pytest

from cranialkit.runner import execute_notebook, image_is_blank, image_outputs, list_notebooks, parameters_cells

NOTEBOOKS = list_notebooks()
EXERCISE_PREAMBLE = ("Each exercise has a checker: it tells you whether your answer is right and, if not, what to "
                     "look at.\nSolutions are in `solutions/nb{number}.py` — try first.")
TIME_ESTIMATE = re.compile(r"\((≈ ?[\d–]+ (s|min)|< ?1 min)[^)]*\)")
MAX_SUMMARY_WORDS, MAX_MARKDOWN_WORDS = 120, 1350
FIGURE_CALLS = ("plt.show(", "plt.close(", "display(fig", "# noqa")


def _words(text: str) -> int:
    return len(text.split())


def _summary(markdown: str) -> str:
    """The text under "## Summary", up to the next second-level heading."""
    return re.split(r"\n## ", markdown.split("## Summary", 1)[1])[0]


def test_series_is_present():
    assert NOTEBOOKS, "no notebooks found in notebooks/"
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(set(numbers)) == len(numbers), f"duplicate notebook numbers: {numbers}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path: Path):
    nb = nbformat.read(path, as_version=4)
    params = parameters_cells(nb)
    assert len(params) == 1, f"{path.name}: {len(params)} cells tagged 'parameters', papermill needs exactly one"
    assert "smoke" in params[0].source, f"{path.name}: the parameters cell has no `smoke` parameter"
    assert nb.cells[0].cell_type == "markdown", f"{path.name}: must open with a title and learning goals"
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} were committed with outputs"
    assert "widgets" not in nb.metadata, f"{path.name}: widget state saved in the metadata"
    assert any("print_config()" in c.source for c in nb.cells), f"{path.name}: imports must end in print_config()"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_follows_the_skeleton(path: Path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    params = parameters_cells(nb)[0]
    assert nb.cells[1] is params, f"{path.name}: the parameters cell must follow the title"
    assert "print_config()" in nb.cells[2].source, f"{path.name}: the imports (ending in print_config()) come third"
    names = [t.id for node in ast.parse(params.source).body if isinstance(node, ast.Assign) for t in node.targets]
    rest = "\n".join(c.source for c in code if c is not params)
    unused = [n for n in names if not re.search(rf"\b{n}\b", rest)]
    assert not unused, f"{path.name}: parameters never used: {unused}"
    several = [line for line in params.source.splitlines() if line.count("=") > 1]
    assert not several, f"{path.name}: one '=' per parameter line (papermill reads them): {several}"
    late_imports = [c.source.splitlines()[0] for c in code[3:] if re.search(r"^(import|from) \w", c.source, re.M)]
    assert not late_imports, f"{path.name}: imports belong in the imports cell: {late_imports}"
    figures = [call for call in FIGURE_CALLS if any(call in c.source for c in code)]
    assert not figures, f"{path.name}: show figures by ending the viz call with ';', not with {figures}"
    sections = [line for line in markdown.splitlines() if re.match(r"## \d+\.", line)]
    untimed = [line for line in sections if not TIME_ESTIMATE.search(line)]
    assert sections and not untimed, f"{path.name}: every numbered section needs a time estimate: {untimed}"
    assert "## Summary" in markdown, f"{path.name}: no summary"
    assert _words(_summary(markdown)) <= MAX_SUMMARY_WORDS, f"{path.name}: the summary is too long"
    assert _words(markdown) <= MAX_MARKDOWN_WORDS, f"{path.name}: {_words(markdown)} words of prose"
    if any("check(" in c.source for c in code):
        preamble = EXERCISE_PREAMBLE.format(number=path.name[:2])
        assert "## Exercises\n" + preamble in markdown, f"{path.name}: the exercises need the common preamble"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(path: Path, tmp_path_factory):
    out_dir = tmp_path_factory.getbasetemp() / "executed"
    run = execute_notebook(path, out_dir, {"smoke": True}, timeout_s=900, export_html=False)
    assert run.ok, f"{path.name} failed after {run.seconds:.0f} s: {run.error} (see {run.output})"
    nb = nbformat.read(run.output, as_version=4)
    images = image_outputs(nb)
    assert images, f"{path.name}: shows no figure"
    blank = [i for i, png in enumerate(images) if image_is_blank(png)]
    assert not blank, f"{path.name}: figures {blank} are blank"


@pytest.mark.notebook
def test_notebook_09_loads_the_models_of_04_to_08(tmp_path_factory):
    """Notebook 09 finds the generators that 04–08 trained (here in smoke mode) by the checkpoint convention and
    loads them: no file is written again and no new model appears."""
    from cranialkit.checkpoints import find_checkpoints
    from cranialkit.generative.data import training_pairs
    from cranialkit.generative.recipes import saved_model_path

    names = ["vae", "wgan_gp", "introvae", "soft_introvae", "ldm_vqvae"]
    pairs = training_pairs("phantom", n_subjects=2, resolution=16, seed=0)  # the smoke sizes of 04–09
    out_dir = tmp_path_factory.getbasetemp() / "executed"
    for number, name in zip(["04", "05", "06", "07", "08"], names):
        if not saved_model_path(name, pairs.volumes, smoke=True).exists():  # run alone: make them first
            (notebook,) = [p for p in NOTEBOOKS if p.name.startswith(number)]
            assert execute_notebook(notebook, out_dir, {"smoke": True}, export_html=False).ok
    paths = {name: saved_model_path(name, pairs.volumes, smoke=True) for name in names}
    stamps = {name: os.stat(path).st_mtime_ns for name, path in paths.items()}
    before = {name: find_checkpoints("generator", name) for name in names}
    (notebook_09,) = [p for p in NOTEBOOKS if p.name.startswith("09")]
    run = execute_notebook(notebook_09, out_dir / "09_with_ldm", {"smoke": True, "generators": names},
                           export_html=False)
    assert run.ok, run.error
    executed = nbformat.read(run.output, as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    for name, path in paths.items():
        assert f"found: {path.name}" in text, f"notebook 09 did not find {name}'s model {path.name}"
        assert os.stat(path).st_mtime_ns == stamps[name], f"notebook 09 trained {name} again"
        assert find_checkpoints("generator", name) == before[name], f"notebook 09 made a new {name} model"


@pytest.mark.notebook
def test_notebook_12_real_data_path_in_smoke_mode(tmp_path_factory):
    """Notebook 12's scarce-data study on a small dataset in SkullFix's own layout: the learning curve of every
    configuration over two training-set sizes, as a table and a figure."""
    from conftest import skullfix_like

    data = skullfix_like(tmp_path_factory.mktemp("skullfix_like"), n_subjects=5)
    (notebook,) = [p for p in NOTEBOOKS if p.name.startswith("12")]
    out_dir = tmp_path_factory.getbasetemp() / "executed" / "12_real_data"
    run = execute_notebook(notebook, out_dir, {"smoke": True, "data": str(data), "sizes": [2, 3], "val_cases": 2},
                           timeout_s=900, export_html=False)
    assert run.ok, f"{notebook.name} failed: {run.error} (see {run.output})"
    executed = nbformat.read(run.output, as_version=4)
    (cell,) = [c for c in executed.cells if c.cell_type == "code" and "run_scarce_study(" in c.source]
    html = "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs)
    for configuration in ("no augmentation", "geometric + registration", "phantom pretraining + geometric"):
        assert configuration in html, f"the learning-curve table has no row for {configuration!r}"
    images = image_outputs(nbformat.v4.new_notebook(cells=[cell]))
    assert len(images) == 1 and not image_is_blank(images[0]), "the learning curves are not shown"
