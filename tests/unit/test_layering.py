"""The library never imports the UI: workbench/ has no streamlit import."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[2] / "workbench"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_library_does_not_import_streamlit_or_the_ui():
    offenders = {p.name: imported_modules(p) & {"streamlit", "ui", "pages"} for p in LIBRARY.rglob("*.py")}
    assert {name: bad for name, bad in offenders.items() if bad} == {}
    assert len(offenders) > 10  # the check really looked at the library
