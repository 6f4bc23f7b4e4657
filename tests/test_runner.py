"""The notebook runner behind the main job: execution, failure reporting, index, blank-figure check."""

from __future__ import annotations

import base64
import io

import matplotlib.pyplot as plt
import nbformat
import numpy as np

from cranialkit.runner import execute_notebook, image_is_blank, run_series


def _png(figure) -> bytes:
    buf = io.BytesIO()
    figure.savefig(buf, format="png")
    plt.close(figure)
    return buf.getvalue()


def test_image_is_blank_tells_flat_from_drawn():
    flat = plt.figure(figsize=(2, 2))
    drawn, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.random.default_rng(0).random((16, 16)))
    assert image_is_blank(_png(flat))
    assert not image_is_blank(_png(drawn))


def _write_notebook(path, body: str, fail: bool = False):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("smoke = False\nscale = 2")
    params.metadata["tags"] = ["parameters"]
    figure = nbformat.v4.new_code_cell(body)
    figure.metadata["tags"] = ["key-figure"]
    table = nbformat.v4.new_code_cell("from IPython.display import HTML\nHTML('<table><tr><td>row</td></tr></table>')")
    table.metadata["tags"] = ["results-table"]
    cells = [nbformat.v4.new_markdown_cell("# test"), params, figure, table]
    if fail:
        cells.append(nbformat.v4.new_code_cell("raise ValueError('broken on purpose')"))
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


PLOT = "import matplotlib.pyplot as plt\nplt.plot([0, 1], [0, scale])\nplt.show()\nprint('smoke', smoke)"


def test_series_writes_index_with_figure_table_and_failure(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _write_notebook(src / "01_good.ipynb", PLOT)
    _write_notebook(src / "02_bad.ipynb", PLOT, fail=True)
    out = tmp_path / "out"
    runs = run_series(out, sorted(src.glob("*.ipynb")), {"smoke": True})
    assert [r.ok for r in runs] == [True, False]
    assert "broken on purpose" in runs[1].error
    index = (out / "index.html").read_text()
    assert "01_good.html" in index and "FAILED" in index and "<td>row</td>" in index
    assert (out / "figures" / "01_good.png").stat().st_size > 1000
    executed = nbformat.read(out / "01_good.ipynb", as_version=4)
    assert any("smoke True" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    # resume: the good notebook is kept, the failed one runs again
    again = run_series(out, sorted(src.glob("*.ipynb")), {"smoke": True})
    assert again[0].seconds == runs[0].seconds and not again[1].ok


def test_execute_notebook_reports_missing_kernel_output_gracefully(tmp_path):
    path = tmp_path / "03_x.ipynb"
    _write_notebook(path, "raise RuntimeError('first cell fails')")
    run = execute_notebook(path, tmp_path / "o", export_html=False)
    assert not run.ok and "first cell fails" in run.error


def test_index_puts_cards_in_a_grid_and_tables_below_them(tmp_path):
    """The front page: one card per notebook (name, status, time, thumbnail scaled to the card) in a grid that
    reflows, and wide results tables below the cards in their own scrolling boxes, so no table widens a card."""
    src = tmp_path / "src"
    src.mkdir()
    two_figures = ("import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([0, 1], [0, 1], 'r')\n"
                   "fig2, ax2 = plt.subplots()\nax2.imshow([[0, 1], [1, 0]])\nplt.show()")
    _write_notebook(src / "01_first.ipynb", two_figures)
    out = tmp_path / "out"
    runs = run_series(out, sorted(src.glob("*.ipynb")), {"smoke": True})
    page = (out / "index.html").read_text()
    cards, tables = page.index('<div class="cards">'), page.index('<div class="tables">')
    assert cards < page.index('<img src="figures/01_first.png"') < tables < page.index("<td>row</td>")
    assert "grid-template-columns" in page and ".card img" in page and "overflow-x: auto" in page
    executed = nbformat.read(out / "01_first.ipynb", as_version=4)
    images = [o for c in executed.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2
    first = base64.b64decode(images[0]["data"]["image/png"])
    assert (out / "figures" / "01_first.png").read_bytes() == first, "the key figure is the tagged cell's first image"
    assert runs[0].ok
