"""The house keeps its shape: no import circle anywhere in the package (the layer contract in
pyproject.toml, checked by `lint-imports` in .ci/run, says which way imports point)."""

from __future__ import annotations

import grimp


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = grimp.build_graph("test_framework")
    circles = [
        (importer, imported)
        for importer in sorted(graph.modules)
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.chain_exists(importer=imported, imported=importer)
    ]
    assert circles == []
