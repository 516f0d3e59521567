"""The rooms stay apart: facts about architectures live in models/, the API imports no torch, the engine no web,
the engine's rooms import each other without cycles, and every choice is spelled in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from app.engine.choices import DTYPES, MODES, OPTIMIZERS, PRECISIONS, SHARDINGS

ROOT = Path(__file__).resolve().parents[1]
NAMES = "resnet|alexnet|lenet5|gpt|vit|vgg|transformer|mlp|sequential|huggingface"
BRANCH = re.compile(rf"""(==|!=|===|!==|\bin\b|startswith\()\s*[\(\[\{{]?\s*["']({NAMES})["']""")
ENGINE = ROOT / "app" / "engine"


def _files(*folders: str, suffixes: tuple[str, ...] = (".py", ".js", ".html")) -> list[Path]:
    return [
        p for folder in folders for p in (ROOT / folder).rglob("*") if p.suffix in suffixes and "vendor" not in p.parts
    ]


def test_no_branch_on_an_architecture_name_outside_models() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in _files("app", "static", "templates")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if BRANCH.search(line)
    ]
    assert not found, "decide by registry facts, not by name:\n" + "\n".join(found)


def test_the_api_imports_no_torch() -> None:
    found = [
        str(p.relative_to(ROOT))
        for p in _files("app/api", suffixes=(".py",))
        if re.search(r"^\s*(import|from) torch\b", p.read_text(), re.M)
    ]
    assert not found, found


def test_the_engine_imports_nothing_web() -> None:
    web = re.compile(r"^\s*(import|from) (fastapi|starlette|uvicorn|jinja2)\b|^\s*from \.\.+(api|web)\b", re.M)
    found = [str(p.relative_to(ROOT)) for p in _files("app/engine", suffixes=(".py",)) if web.search(p.read_text())]
    assert not found, found


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _engine_imports() -> dict[str, set[str]]:
    """Every engine module -> the engine modules it imports, at the top or inside a function."""
    modules = {_module_name(p): p for p in ENGINE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_engine_modules_import_each_other_without_cycles() -> None:
    """A package imports its own modules (its __init__ re-exports them); nothing else may loop."""
    graph = _engine_imports()
    for name in graph:  # a package's __init__ importing its children is the package's index, not a dependency
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")} if _is_package(name) else graph[name]
    assert not _cycles(graph), _cycles(graph)


def _is_package(name: str) -> bool:
    return (ENGINE.parent.parent / name.replace(".", "/") / "__init__.py").exists()


def test_the_engine_rooms_import_each_other_without_cycles() -> None:
    """Between rooms (tracing, summary, memory, sizing...) too: a room only leans on the rooms below it."""
    rooms: dict[str, set[str]] = {}
    for name, targets in _engine_imports().items():
        room = name.split(".")[2] if name.count(".") >= 2 else "(top)"
        if room in ("jobs", "__init__"):  # the entry points import every room by design
            continue
        rooms.setdefault(room, set()).update(
            t.split(".")[2] for t in targets if t.count(".") >= 2 and t.split(".")[2] not in (room, "jobs")
        )
    for room in list(rooms):
        rooms[room] = {r for r in rooms[room] if r in rooms or r.removesuffix(".py") in rooms}
    rooms = {room: {t for t in targets if t in rooms} for room, targets in rooms.items()}
    assert not _cycles(rooms), _cycles(rooms)


def test_no_two_public_engine_functions_share_a_name() -> None:
    """A name like ``memory`` or ``attention`` means one thing in the engine."""
    seen: dict[str, list[str]] = {}
    for path in ENGINE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
                seen.setdefault(node.name, []).append(str(path.relative_to(ROOT)))
    twice = {name: places for name, places in seen.items() if len(places) > 1}
    assert not twice, twice


CHOICE_TABLES = {"dtypes": set(DTYPES), "precisions": set(PRECISIONS), "optimizers": set(OPTIMIZERS),
                 "modes": set(MODES), "shardings": set(SHARDINGS)}  # fmt: skip
JS_LIST = re.compile(r"""\[\s*(["'][\w.-]+["']\s*(?:,\s*["'][\w.-]+["']\s*)+)\]""")


def _copied_tables(values: list[str]) -> list[str]:
    """The choice tables of which ``values`` (one literal list) holds two ids or more."""
    return [name for name, ids in CHOICE_TABLES.items() if len(ids & set(values)) >= 2]


def _python_lists(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        items = node.elts if isinstance(node, ast.List | ast.Tuple | ast.Set) else None
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", "") == "Literal":
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if items:
            values = [e.value for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            found += [f"{path.name}:{node.lineno}: {t}" for t in _copied_tables(values)]
    return sorted(set(found))  # a Literal's tuple is walked twice


def test_each_choice_is_spelled_in_one_place() -> None:
    """No list of dtypes, precisions, optimizers, modes or shardings outside choices.py: schemas, the CLI, labs,
    templates and page scripts read them from there (or from GET /api/choices). A lab's Literal copy of the
    optimizers is what this catches."""
    found = []
    for path in _files("app", "static", "templates"):
        if path == ENGINE / "choices.py":
            continue
        if path.suffix == ".py":
            found += _python_lists(path)
        else:
            for match in JS_LIST.finditer(path.read_text()):
                values = re.findall(r"""["']([\w.-]+)["']""", match.group(1))
                found += [f"{path.relative_to(ROOT)}: {t}" for t in _copied_tables(values)]
    assert not found, "a list of choices spelled outside choices.py:\n" + "\n".join(sorted(found))


def test_the_spelling_check_catches_a_copy(tmp_path: Path) -> None:
    """The check above would fail on a lab that lists the optimizers itself."""
    copy = tmp_path / "lab.py"
    copy.write_text('optimizer: Literal["sgd", "sgd-momentum", "adam", "adamw"] = "adam"\n')
    assert _copied_tables(["sgd", "adam"]) == ["optimizers"]
    assert _python_lists(copy) == ["lab.py:1: optimizers"]
