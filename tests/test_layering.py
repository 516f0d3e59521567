"""The rooms stay apart: facts about architectures live in models/, the API imports no torch, the engine no web."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMES = "resnet|alexnet|lenet5|gpt|vit|vgg|transformer|mlp|sequential|huggingface"
BRANCH = re.compile(rf"""(==|!=|===|!==|\bin\b|startswith\()\s*[\(\[\{{]?\s*["']({NAMES})["']""")


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
    web = re.compile(r"^\s*(import|from) (fastapi|starlette|uvicorn|jinja2)\b|^\s*from \.\.(api|web)\b", re.M)
    found = [str(p.relative_to(ROOT)) for p in _files("app/engine", suffixes=(".py",)) if web.search(p.read_text())]
    assert not found, found


def test_each_choice_is_spelled_in_at_most_two_files() -> None:
    holders = [p for p in _files("app", "static", "templates") if "sgd-momentum" in p.read_text()]
    assert len(holders) <= 2, holders
