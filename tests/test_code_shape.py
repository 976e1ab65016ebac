"""
Size limits that keep the code readable: no library module over 500 lines, and no function over
60 lines in the library, the scripts or the evaluator (tests are exempt).
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
CHECKED = ("guided_diffusion", "scripts", "evaluations")


def module_lines(source):
    return len(source.splitlines())


def long_functions(source, limit=MAX_FUNCTION_LINES):
    """
    :return: [(qualified name, first line, length)] of the functions and methods, nested ones
        included, that span more than `limit` lines (decorators excluded, docstring included).
    """
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}."
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = child.end_lineno - child.lineno + 1
                if length > limit:
                    found.append((name[:-1], child.lineno, length))
            visit(child, name)

    visit(ast.parse(source), "")
    return found


def _python_files(folder):
    return sorted((REPO / folder).rglob("*.py"))


def test_the_checker_measures_functions_and_methods():
    def body(n, indent):
        return "".join(f"{indent}x{i} = {i}\n" for i in range(n))

    # def line + 59 body lines = 60 (allowed); def line + 60 body lines = 61 (too long)
    source = "def short():\n" + body(59, "    ") + "\nclass C:\n    def long(self):\n" + body(60, "        ")
    assert long_functions(source) == [("C.long", 63, 61)]
    assert module_lines(source) == 123 and module_lines("a\nb\n") == 2


def test_nested_functions_are_measured_on_their_own():
    inner = "\n".join(f"        y{i} = {i}" for i in range(61))
    source = f"def outer():\n    def inner():\n{inner}\n    return inner\n"
    assert [name for name, _, _ in long_functions(source)] == ["outer", "outer.inner"]


@pytest.mark.parametrize("path", _python_files("guided_diffusion"), ids=lambda p: str(p.relative_to(REPO)))
def test_library_module_has_at_most_500_lines(path):
    assert module_lines(path.read_text()) <= MAX_MODULE_LINES


@pytest.mark.parametrize("folder", CHECKED)
def test_no_function_over_60_lines(folder):
    too_long = [
        f"{path.relative_to(REPO)}:{line} {name} ({length} lines)"
        for path in _python_files(folder)
        for name, line, length in long_functions(path.read_text())
    ]
    assert not too_long, f"split these functions (at most {MAX_FUNCTION_LINES} lines): {too_long}"
