"""Every folder of code is a package that ``pip install .`` ships (a folder without an
``__init__.py`` would import from a checkout and be missing from an installed proxy)."""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parent.parent


def test_every_code_folder_is_a_shipped_package() -> None:
    shipped = set(find_packages(str(ROOT), include=["bolt*", "proxy*", "grammar*"]))
    folders = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for top in ("bolt", "proxy", "grammar")
        for path in (ROOT / top).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert folders <= shipped, sorted(folders - shipped)
