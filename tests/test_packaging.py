"""pyproject.toml and environment.yml pin the same versions (conda users get the tested set)."""

from __future__ import annotations

import re

import tomllib
from conftest import REPO_ROOT


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = _pins(project["dependencies"] + project["optional-dependencies"]["dev"])
    conda = _pins(line.strip().lstrip("- ") for line in (REPO_ROOT / "environment.yml").read_text().splitlines())
    assert wanted["torch"] == "2.13.0", "torch must stay pinned to the version with a local CPU wheel"
    missing = {k: v for k, v in wanted.items() if conda.get(k) != v}
    assert not missing, f"environment.yml differs from pyproject.toml for {missing}"
