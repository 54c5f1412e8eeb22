"""Every stage in dvc.yaml lists the repository code its command runs, so a change to it reruns the stage.

The code is derived, not listed by hand: the stage's `python -m MODULE` and every repository module
listed in its deps, followed through every import statement (also those inside functions) to the
repository modules they name. A package's `__init__.py` counts when it holds code. Imports made by
name at run time (the extractor registry's `importlib`) are not seen: the module they load must be
listed itself, as `features/${key}.py` is, and its imports are then followed.
"""
from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "features", "models")
# Files whose imports inside functions are not followed. pipeline/params.py checks names and ranges
# against the tables kept beside the code that uses them (models' optimizers, the extractors'
# settings): those imports can refuse a params file but not change a stage's outputs, and following
# them would make prepare and every extraction depend on all training code.
CHECKS_ONLY = {"pipeline/params.py"}


def module_file(name: str) -> Path | None:
    """The repository file of module `name` (`pipeline.io` -> pipeline/io.py), or None outside the repository."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def holds_code(path: Path) -> bool:
    """False for an empty `__init__.py` or one with only a docstring: importing it can change nothing."""
    body = ast.parse(path.read_text()).body
    return bool(body[1:] if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) else body)


def import_statements(tree: ast.AST, inside_functions: bool):
    """The Import and ImportFrom nodes of `tree`; those in function bodies only if `inside_functions`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif inside_functions or not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from import_statements(node, inside_functions)


def imported_names(path: Path, package: str) -> set[str]:
    """Every module name an import statement in `path` may load, `from A import B` giving both A and A.B."""
    names = set()
    inside_functions = path.relative_to(ROOT).as_posix() not in CHECKS_ONLY
    for node in import_statements(ast.parse(path.read_text()), inside_functions):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            source = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else [])) if node.level else node.module
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def repository_imports(modules: list[str]) -> set[str]:
    """The repository files (relative paths) that importing `modules` runs, followed transitively."""
    seen: set[Path] = set()
    pending = list(modules)
    while pending:
        name = pending.pop()
        parts = name.split(".")
        # importing a.b.c runs a/__init__.py and a/b/__init__.py first
        for depth in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:depth]))
            if path is None or path in seen:
                continue
            seen.add(path)
            package = ".".join(parts[:depth]) if path.name == "__init__.py" else ".".join(parts[: depth - 1])
            pending.extend(imported_names(path, package))
    return {path.relative_to(ROOT).as_posix() for path in seen if path.name != "__init__.py" or holds_code(path)}


def stage_module(command: str) -> str:
    words = shlex.split(command)
    assert "-m" in words, f"{command!r}: the test reads stages run as `python -m MODULE`"
    return words[words.index("-m") + 1]


def listed_module(path: str) -> str | None:
    """`features/bovw.py` -> features.bovw: a listed repository module is code the stage runs."""
    if not path.endswith(".py") or path.split("/")[0] not in PACKAGES:
        return None
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def stages() -> list[tuple[str, str, list[str]]]:
    """(name, command, listed paths) of every stage, foreach and matrix expanded by DVC itself."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return [
            (stage.addressing, stage.cmd, [dep.def_path for dep in stage.deps if not isinstance(dep, ParamsDependency)])
            for stage in repo.index.stages
        ]


def test_the_import_walk_follows_imports_inside_functions_and_skips_empty_packages():
    """The walk itself, on this repository's own code."""
    found = repository_imports(["pipeline.cli"])
    assert "pipeline/tracking.py" in found  # a top-level `from pipeline import tracking`
    assert "pipeline/compare.py" in found  # imported inside command_compare only
    assert "features/__init__.py" in found and "pipeline/__init__.py" not in found  # a docstring alone is no code


@pytest.mark.parametrize("name,command,listed", [pytest.param(*stage, id=stage[0]) for stage in stages()])
def test_every_stage_lists_the_repository_code_it_imports(name, command, listed):
    roots = [stage_module(command)] + [module for module in map(listed_module, listed) if module]
    missing = sorted(path for path in repository_imports(roots) if not any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in listed))
    assert not missing, f"dvc.yaml: stage {name} imports {', '.join(missing)}; add them to its deps"
