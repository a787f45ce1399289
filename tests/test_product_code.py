"""House rules for the product's own code (what the import graph cannot see): no `assert` (gone
under `python -O`), and modules small enough to have one job each."""

from __future__ import annotations

import ast

from tests.test_import_graph import ROOT, _modules

# "No module of the product is over ~400 lines": a little slack for a docstring's last lines.
MAX_MODULE_LINES = 420
SOURCES = {path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8") for path in _modules().values()}


def test_no_product_module_has_an_assert_statement() -> None:
    asserts = {
        name: [node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Assert)]
        for name, source in SOURCES.items()
    }
    assert {name: lines for name, lines in asserts.items() if lines} == {}


def test_no_product_module_is_over_the_size_of_one_job() -> None:
    sizes = {name: len(source.splitlines()) for name, source in SOURCES.items()}
    assert {name: size for name, size in sizes.items() if size > MAX_MODULE_LINES} == {}
    assert len(sizes) > 50  # every package was walked
