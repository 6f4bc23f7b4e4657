"""Notebooks 04–08 train their generators with the values of ``cranialkit.generative.recipes``.

The checkpoint file name hashes every setting, so a notebook whose parameters drift from the recipe trains a model
that notebooks 09 and 12 (which call ``train_or_load`` with the recipe) never find, and train again.
"""

from __future__ import annotations

import ast

import nbformat
import pytest

from cranialkit.generative.recipes import recipe
from cranialkit.runner import list_notebooks, parameters_cells

GENERATOR_NOTEBOOKS = {"04": "vae", "05": "wgan_gp", "06": "introvae", "07": "soft_introvae"}


def notebook_parameters(number: str) -> dict:
    """The assignments of notebook ``number``'s parameters cell: literals, or arithmetic on them (``1 / 3e-3``),
    evaluated without builtins."""
    (path,) = [p for p in list_notebooks() if p.name.startswith(number)]
    source = parameters_cells(nbformat.read(path, as_version=4))[0].source
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            expression = compile(ast.Expression(node.value), "<parameters>", "eval")
            values[node.targets[0].id] = eval(expression, {"__builtins__": {}})  # noqa: S307 - our own cell
    return values


@pytest.mark.parametrize("number,name", sorted(GENERATOR_NOTEBOOKS.items()))
def test_notebook_parameters_match_the_recipe(number: str, name: str):
    params = notebook_parameters(number)
    plan = recipe(name)
    expected = {"steps": plan["steps"], "batch_size": plan["batch_size"], "lr": plan["lr"],
                "n_subjects": plan["n_subjects"], **plan["config"]}
    missing = sorted(set(expected) - set(params))
    assert not missing, f"notebook {number}: the parameters cell has no {missing} (recipe of {name})"
    differ = {k: (params[k], v) for k, v in expected.items() if params[k] != v}
    assert not differ, f"notebook {number} differs from recipe('{name}') as (notebook, recipe): {differ}"


def test_parameter_parser_reads_literals():
    params = notebook_parameters("04")
    assert params["smoke"] is False and isinstance(params["steps"], int)


@pytest.mark.parametrize("name", ["ldm_vqvae", "ldm_vae"])
def test_latent_diffusion_notebook_matches_the_recipes(name: str):
    params = notebook_parameters("08")
    plan = recipe(name)
    assert (params["denoiser_steps"], params["batch_size"], params["denoiser_lr"]) == (
        plan["steps"], plan["batch_size"], plan["lr"])
    config = plan["config"]
    assert params["autoencoder_steps"] == config["autoencoder_steps"]
    assert params["autoencoder_lr"][name] == config["autoencoder_lr"]
    assert params["n_subjects"] == plan["n_subjects"]
    assert {"levels": params["levels"]} == config["autoencoder"]
    assert params["prediction_type"] == config["prediction_type"]
