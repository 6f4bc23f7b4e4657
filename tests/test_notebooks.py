"""Every notebook in notebooks/: committed clean, exactly one `parameters` cell, and it runs in smoke mode.

The notebooks run in order and share the test session's data directory, as they do in the main job.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from cranialkit.runner import execute_notebook, image_is_blank, image_outputs, list_notebooks, parameters_cells

NOTEBOOKS = list_notebooks()


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
