"""The house's rules, read from the source: no import loops, a shared floor that imports no
job, and jobs that share through the floor, not through each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOBS = ("pipeline.index", "pipeline.train", "pipeline.query", "pipeline.report")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each pipeline module -> the pipeline modules it imports, at the top or inside a
    function alike (a deferred import still ties the two)."""
    modules = {module_name(p): p for p in (ROOT / "pipeline").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def package_of(module: str) -> str | None:
    return next((j for j in JOBS if module == j or module.startswith(j + ".")), None)


def test_no_import_loops():
    graph = imports()
    # a package's __init__ that re-exports its modules is not a loop with them
    edges = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    loops = []
    for start in edges:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for dep in edges[node]:
                if dep == start:
                    loops.append(path)
                elif dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*path, dep]))
    assert not loops, f"import loops: {loops[:3]}"


def test_the_floor_imports_no_job():
    floor = {m: deps for m, deps in imports().items() if package_of(m) is None}
    bad = {m: sorted(d for d in deps if package_of(d)) for m, deps in floor.items()}
    assert not {m: d for m, d in bad.items() if d}


def test_jobs_share_through_the_floor():
    """index, train and query never import each other; each may write its report (report
    imports none of them)."""
    bad = []
    for module, deps in imports().items():
        own = package_of(module)
        for dep in deps:
            other = package_of(dep)
            if own and other and other != own and other != "pipeline.report":
                bad.append((module, dep))
    assert not bad
