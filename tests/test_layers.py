"""The package's floors: a module imports only from its own floor or the floors above it.

    names < host < spec < render < install < observe < agent < upgrade < cli

so the import graph has no circle and no arrow running back up (docs/design.md, "The map").
"""

from __future__ import annotations

import ast
from pathlib import Path

import tracardi_systemd

FLOORS = ("names", "host", "spec", "render", "install", "observe", "agent", "upgrade", "cli")
PACKAGE = Path(tracardi_systemd.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> int:
    """The module's floor; the entry point `python -m tracardi_systemd` stands above all."""
    if module == "tracardi_systemd.__main__":
        return len(FLOORS)
    parts = module.split(".")
    return FLOORS.index(parts[1]) if len(parts) > 1 and parts[1] in FLOORS else -1


def imports() -> list[tuple[str, str]]:
    """(importer, imported) for every import of a package module, at any depth."""
    modules = {module_name(path) for path in PACKAGE.rglob("*.py")}
    arrows = []
    for path in PACKAGE.rglob("*.py"):
        importer = module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [n if n in modules else node.module for n in names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            arrows += [(importer, t) for t in targets
                       if t in modules and t not in (importer, "tracardi_systemd")]
    return arrows


def test_every_module_stands_on_a_floor():
    homeless = [module_name(p) for p in PACKAGE.rglob("*.py")
                if floor(module_name(p)) < 0 and module_name(p) != "tracardi_systemd"]
    assert homeless == []


def test_no_import_runs_back_up():
    back_up = [f"{a} -> {b}" for a, b in imports() if floor(b) > floor(a)]
    assert back_up == []


def test_the_library_does_not_import_click():
    library = [f"{a} -> click" for a in {module_name(p) for p in PACKAGE.rglob("*.py")}
               if floor(a) < FLOORS.index("cli") and "click" in _imported_roots(a)]
    assert library == []


def _imported_roots(module: str) -> set[str]:
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
    return roots
