"""The package's modules import one another in one direction only: every
import of a sibling is at module level (none hidden inside a function to
dodge a circle), and the graph of those imports has no cycle."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "numpack_sqlite"


def sibling_imports(path):
    """(module-level siblings, siblings imported inside functions)."""
    tree = ast.parse(path.read_text())
    top, nested = set(), set()

    def names(node):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                yield node.module
            else:
                yield from (a.name for a in node.names)

    for node in tree.body:
        top.update(names(node))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                nested.update(names(sub))
    return top, nested


def graph():
    return {p.stem: sibling_imports(p) for p in sorted(PKG.glob("*.py"))}


def test_no_import_inside_a_function():
    hidden = {m: sorted(n) for m, (_, n) in graph().items() if n}
    assert hidden == {}


def test_imports_form_no_cycle():
    edges = {m: t | n for m, (t, n) in graph().items()}
    done, stack = set(), []

    def visit(m):
        if m in stack:
            raise AssertionError("import cycle: " + " -> ".join(
                stack[stack.index(m):] + [m]))
        if m in done:
            return
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            visit(n)
        stack.pop()
        done.add(m)

    for m in edges:
        visit(m)
