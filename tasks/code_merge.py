"""Function-level edits: a reply that writes out only the functions it changed is merged into the current file.

This is the edit style a weak local model can follow (measured: Qwen2.5-Coder-0.5B does not produce SEARCH/REPLACE
markers reliably, but writes a complete function in a code block well). A top-level function, class or simple
constant in the reply replaces the one of the same name; new ones are added; imports it needs are added; every
other line of the current file stays. A reply that defines every top-level function and class of the current
file is a whole file, and is not merged.
"""
from __future__ import annotations

import ast

_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_IMPORTS = (ast.Import, ast.ImportFrom)


def _assigned_name(node: ast.stmt) -> str | None:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def _named(tree: ast.Module) -> dict[str, ast.stmt]:
    named = {}
    for node in tree.body:
        name = node.name if isinstance(node, _DEFINITIONS) else _assigned_name(node)
        if name:
            named[name] = node
    return named


def _span(node: ast.stmt) -> tuple[int, int]:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return start, node.end_lineno


def _segment(source_lines: list[str], node: ast.stmt) -> str:
    start, end = _span(node)
    return "".join(source_lines[start - 1:end]).rstrip("\n") + "\n"


def merge_definitions(current: str, partial: str) -> str | None:
    """The current file with the reply's definitions merged in; None when the reply is a whole file (or either
    side does not parse, which the caller reports)."""
    try:
        current_tree, partial_tree = ast.parse(current), ast.parse(partial)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    current_defs = {n.name for n in current_tree.body if isinstance(n, _DEFINITIONS)}
    partial_defs = {n.name for n in partial_tree.body if isinstance(n, _DEFINITIONS)}
    if not partial_defs or current_defs <= partial_defs:
        return None
    current_named, partial_named = _named(current_tree), _named(partial_tree)
    partial_lines = partial.splitlines(keepends=True)
    lines = current.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"

    # 1. replace same-named definitions and constants, bottom first so line numbers stay valid
    replaced = sorted(((_span(current_named[name]), _segment(partial_lines, node))
                       for name, node in partial_named.items() if name in current_named), reverse=True)
    for (start, end), text in replaced:
        lines[start - 1:end] = [text]
    merged = "".join(lines)

    # 2. add what is new: imports at the top, constants before the first definition, definitions at the end
    known_imports = {ast.unparse(n) for n in current_tree.body if isinstance(n, _IMPORTS)}
    new_imports = [_segment(partial_lines, n) for n in partial_tree.body
                   if isinstance(n, _IMPORTS) and ast.unparse(n) not in known_imports]
    new_constants = [_segment(partial_lines, node) for name, node in partial_named.items()
                     if name not in current_named and not isinstance(node, _DEFINITIONS)]
    new_definitions = [_segment(partial_lines, node) for name, node in partial_named.items()
                       if name not in current_named and isinstance(node, _DEFINITIONS)]
    if new_imports or new_constants:
        merged = _insert_top(merged, new_imports, new_constants)
    if new_definitions:
        merged = merged.rstrip("\n") + "\n\n\n" + "\n\n".join(new_definitions)
    return merged


def _insert_top(source: str, imports: list[str], constants: list[str]) -> str:
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    after_header = 0   # below the docstring and the existing imports
    first_definition = len(lines)
    for index, node in enumerate(tree.body):
        is_docstring = index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if is_docstring or isinstance(node, _IMPORTS):
            after_header = node.end_lineno
        elif isinstance(node, _DEFINITIONS):
            first_definition = min(first_definition, _span(node)[0] - 1)
    first_definition = max(first_definition, after_header)
    block_constants = ["\n"] + constants if constants else []
    return "".join(lines[:after_header] + imports + lines[after_header:first_definition] + block_constants
                   + ["\n"] * bool(constants) + lines[first_definition:])
