"""Functions a reader can hold in their head: none over 40 lines without saying why."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 40
# Where the rule is enforced so far; a file joins the list once it is cut to size.
CHECKED = sorted(str(p.relative_to(ROOT)) for package in ("microtape", "models", "viz")
                 for p in (ROOT / package).glob("*.py")) + sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "microtape/closed_form").glob("*.py"))


def long_functions(path: Path) -> list[str]:
    """Functions of ``path`` longer than MAX_LINES (docstring included) whose body has no
    ``# Long ...`` comment giving the reason."""
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = lines[node.lineno - 1:node.end_lineno]
            if len(body) > MAX_LINES and not any(line.strip().startswith("# Long") for line in body):
                found.append(f"{node.name} ({len(body)} lines)")
    return found


@pytest.mark.parametrize("name", CHECKED)
def test_functions_are_short_or_say_why_not(name):
    assert not long_functions(ROOT / name), (
        f"{name}: split these, or say in a '# Long ...' comment why they are long: "
        f"{long_functions(ROOT / name)}")


def test_the_length_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    path = tmp_path / "long.py"
    path.write_text(f"def long():\n{body}\n\n\ndef short():\n    return 1\n")
    assert long_functions(path) == [f"long ({MAX_LINES + 1} lines)"]
    path.write_text(f"def long():\n    # Long: a table kept whole.\n{body}\n")
    assert long_functions(path) == []
