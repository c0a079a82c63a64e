"""The core's shape: imports that run one way, the public target lookup."""

import ast
from pathlib import Path

import numpy as np
import pytest

import microtape as mt

PACKAGE = Path(mt.__file__).resolve().parent


# -- the backward pass's target lookup -----------------------------------------------

def _recorded():
    a = mt.Tensor(np.arange(3.0), name="a")
    with mt.Tape() as tape:
        b = mt.mul(a, 2.0, name="b")
        c = mt.sum(b, name="c")
    return tape, a, b, c


def test_index_of_is_one_past_the_node_that_made_the_target():
    tape, a, b, c = _recorded()
    assert tape.index_of(c) == len(tape) == 2
    assert tape.index_of(b) == 1
    assert tape.index_of(a, sources=[a]) == 0  # a source: no op lies between


def test_index_of_names_the_caller_and_the_target_it_cannot_find():
    tape, a, b, c = _recorded()
    stray = mt.Tensor(np.ones(2), name="stray")
    with pytest.raises(ValueError, match=r"^viz: the target 'stray' was not recorded on this tape; "
                                         r"compute it inside 'with tape:'"):
        tape.index_of(stray, caller="viz")
    with pytest.raises(TypeError, match=r"^gradient: the target must be a Tensor, not ndarray"):
        tape.index_of(np.ones(2))


# -- imports ---------------------------------------------------------------------------

def _module_imports() -> dict[str, set[str]]:
    """For each module of the package, the package modules it imports at any level."""
    names = {p.stem for p in PACKAGE.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("microtape."):
                deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[1] for a in node.names
                            if a.name.startswith("microtape."))
        graph[path.stem] = {d for d in deps if d in names and d != path.stem}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of module names, or None (depth-first, with colours)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_imports_run_one_way():
    """Every import, lazy ones inside functions included: no module needs itself back."""
    cycle = _cycle(_module_imports())
    assert cycle is None, " -> ".join(cycle)


def test_the_core_chain_errors_tensor_tape_primitive_ops():
    graph = _module_imports()
    order = ["errors", "tensor", "tape", "primitive", "ops"]
    for i, module in enumerate(order):
        assert not graph[module] & set(order[i + 1:]), (module, graph[module])


def test_no_module_level_import_after_code():
    for path in sorted(PACKAGE.glob("*.py")):
        body = ast.parse(path.read_text(encoding="utf-8")).body
        seen_code = False
        for node in body:
            is_import = isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Try)  # an import guard: try: import numpy / except ImportError
                and all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in node.body))
            is_docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            if is_import:
                assert not seen_code, f"{path.name}:{node.lineno}: import after code"
            elif not is_docstring:
                seen_code = True


# -- ops.py holds the maths; validation.py what is checked before it --------------------

def test_label_checks_and_shape_hints_live_in_validation():
    from microtape import ops, validation
    tree = ast.parse((PACKAGE / "ops.py").read_text(encoding="utf-8"))
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert not {d for d in defined if d.endswith("_hint") or d.startswith("_check")}, defined
    assert not hasattr(ops, "_check_labels")  # no compatibility alias: models/ imports validation
    assert ops.matmul.explain is validation.matmul_hint


def test_a_label_check_still_names_the_op_and_the_range():
    with pytest.raises(mt.InputError, match=r"class index 7 is out of range for 3 classes"):
        mt.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 7]))


# Function length is held for every package by tests/test_code_shape.py.
