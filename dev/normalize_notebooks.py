"""Make committed notebooks uniform: python3 kernelspec, no outputs, no execution counts, no widget/jupytext state.

Usage: python dev/normalize_notebooks.py notebooks/*.ipynb
Authoring: write a jupytext percent script, then `jupytext --to ipynb script.py -o notebooks/NN_topic.ipynb`
and run this script on the result.
"""

from __future__ import annotations

import sys

import nbformat

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def normalize(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    for cell in nb.cells:
        cell.metadata.pop("jupyter", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.validate(nb)
    nbformat.write(nb, path)


if __name__ == "__main__":
    for notebook in sys.argv[1:]:
        normalize(notebook)
        print("normalized", notebook)
