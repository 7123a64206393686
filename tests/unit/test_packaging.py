"""The package installs with its data (so `import workbench` works from anywhere once installed), and the
install keeps requirements.txt the one list of dependencies."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_package_data_globs_cover_every_file_in_workbench_data():
    globs = pyproject()["tool"]["setuptools"]["package-data"]["workbench"]
    data_files = sorted(p.relative_to(ROOT / "workbench").as_posix()
                        for p in (ROOT / "workbench" / "data").iterdir() if p.is_file())
    assert data_files, "workbench/data holds the packaged facts and templates"
    unmatched = [f for f in data_files if not any(fnmatch.fnmatch(f, g) for g in globs)]
    assert not unmatched, f"add a glob to [tool.setuptools.package-data] for {unmatched}"


def test_dependencies_come_from_requirements_txt_only():
    project = pyproject()["project"]
    assert project["dependencies"] == []
    assert project["name"] == "intent-workbench"
    assert pyproject()["tool"]["setuptools"]["packages"]["find"]["include"] == ["workbench", "workbench.*"]


def test_make_install_installs_the_package_editable_last_and_restamps_on_a_pyproject_change():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    stamp = next(line for line in makefile.splitlines() if line.startswith("STAMP :="))
    assert "requirements.txt pyproject.toml" in stamp
    assert "$(STAMP): requirements.txt pyproject.toml" in makefile
    steps = [line.strip() for line in makefile.split("$(STAMP):")[1].split("install:")[0].splitlines()]
    def step(text: str) -> int:
        return next(i for i, line in enumerate(steps) if text in line and not line.startswith("#"))

    torch, requirements, workbench = step("torch=="), step("-r requirements.txt"), step("--no-deps --no-build-isolation -e .")
    assert torch < requirements < workbench
