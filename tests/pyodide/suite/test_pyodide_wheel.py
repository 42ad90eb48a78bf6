"""The SDK under test is the built wheel, and it installs in Pyodide as it is."""

from __future__ import annotations

import site
from importlib import metadata, resources
from pathlib import Path

from packaging.requirements import Requirement

import examsync
import examsync.pyodide


def test_the_sdk_comes_from_the_wheel_with_its_javascript() -> None:
    site_packages = Path(site.getsitepackages()[0])
    assert Path(examsync.__file__).is_relative_to(site_packages)
    assert resources.files(examsync.pyodide).joinpath("idb.js").is_file()


def test_no_cpython_only_dependency_is_required_in_pyodide() -> None:
    required = [
        Requirement(r).name
        for r in metadata.requires("examsync") or []
        if "extra ==" not in r
        and (Requirement(r).marker is None or Requirement(r).marker.evaluate())
    ]
    assert required == []
