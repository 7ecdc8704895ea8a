"""Which package may import which: checked on the source (ast), so a lazy import inside a function counts too.

Why: `shm_protocol` is loaded inside OBS's own Python, which has only the standard library and numpy, and is
the one definition of the bytes both sides exchange; the backend must not depend on the OBS plugin (it runs
without OBS, and the plugin must stay free to change its internals).
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imports(package: str) -> list[tuple[str, str]]:
    """(file, top-level module) for every absolute import in the .py files under `package`."""
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path.relative_to(REPO).as_posix(), alias.name.split(".")[0]) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((path.relative_to(REPO).as_posix(), node.module.split(".")[0]))
    return found


def test_backend_imports_nothing_from_the_obs_plugin():
    offenders = [f"{file} imports {module}" for file, module in _imports("backend") if module == "obs_plugin"]
    assert not offenders, offenders


def test_shm_protocol_needs_only_the_standard_library_and_numpy():
    allowed = set(sys.stdlib_module_names) | {"numpy", "shm_protocol", "_posixshmem"}
    offenders = [f"{file} imports {module}" for file, module in _imports("shm_protocol") if module not in allowed]
    assert not offenders, offenders
    assert _imports("shm_protocol"), "no imports found: the package moved?"
