"""The package shows the data flow: each stage imports only the stages below it, every stage opens
with a docstring that says what it owns, and the library never imports the UI."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[2] / "workbench"

#: Stages from the bottom up; a module may import its own stage and the stages before it.
STAGES = (
    ("core",),
    ("scenarios",),
    ("model",),
    ("features",),
    ("causal",),
    ("incrimination",),
    ("hypotheses",),
    ("organism", "sae_training"),
    ("scale",),
    ("report",),
    ("cli", "__main__"),
)
RANK = {name: rank for rank, names in enumerate(STAGES) for name in names}


def stage_of(path: Path) -> str:
    relative = path.relative_to(LIBRARY)
    return relative.parts[0].removesuffix(".py")


def imports(path: Path) -> list[tuple[str, int]]:
    """(imported top-level name, line) for every import in a file, lazy ones inside functions too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            if node.module == "workbench":
                found += [(f"workbench.{alias.name}", node.lineno) for alias in node.names]
    return found


def library_files() -> list[Path]:
    return [p for p in LIBRARY.rglob("*.py") if p.parent != LIBRARY or p.name != "__init__.py"]


def test_library_does_not_import_streamlit_or_the_ui():
    offenders = {str(p.relative_to(LIBRARY)): sorted({name for name, _ in imports(p)
                                                      if name.split(".")[0] in {"streamlit", "ui", "pages"}})
                 for p in LIBRARY.rglob("*.py")}
    assert {name: bad for name, bad in offenders.items() if bad} == {}
    assert len(offenders) > 10  # the check really looked at the library


def test_every_module_belongs_to_a_stage():
    unknown = sorted({stage_of(p) for p in library_files()} - set(RANK))
    assert unknown == [], f"modules outside every stage: {unknown}; add the stage to STAGES"


def test_stages_import_only_stages_below_them():
    violations = []
    for path in library_files():
        own = RANK[stage_of(path)]
        for name, line in imports(path):
            parts = name.split(".")
            if parts[0] != "workbench" or len(parts) < 2:
                continue
            target = parts[1]
            if target not in RANK:
                violations.append(f"{path.relative_to(LIBRARY)}:{line} imports unknown stage {name}")
            elif RANK[target] > own:
                violations.append(f"{path.relative_to(LIBRARY)}:{line} ({stage_of(path)}) imports {name} "
                                  f"({target} is a later stage)")
    assert violations == []


def test_every_stage_says_what_it_owns():
    for stage in set(RANK) - {"__main__"}:
        package = LIBRARY / stage / "__init__.py"
        module = LIBRARY / f"{stage}.py"
        path = package if package.exists() else module
        assert path.exists(), f"stage {stage} has no module"
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring and len(docstring.split()) >= 12, f"{path.relative_to(LIBRARY)} needs a docstring saying what it owns"
