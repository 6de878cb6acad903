"""Every folder with an __init__.py is installed, under the tilearena namespace only."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = Path(__file__).resolve().parents[1]


def _declared() -> tuple[list[str], dict[str, str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return config["packages"], config["package-dir"]


def test_every_package_folder_is_listed() -> None:
    packages, package_dir = _declared()
    expected = set()
    for prefix, folder in package_dir.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base).parts
            expected.add(".".join((prefix, *relative)))
    assert expected == set(packages), f"pyproject packages differ: {sorted(expected ^ set(packages))}"


def test_packages_import_under_the_namespace() -> None:
    packages, _ = _declared()
    for name in packages:
        importlib.import_module(name)
    assert Path(importlib.import_module("tilearena.kernels").__file__).parent == ROOT / "kernels"
