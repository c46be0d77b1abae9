"""Option documentation, read from the source when asked.

An option is documented by the docstring under its field, or by ``Field(description=...)``. pydantic can
copy those docstrings into ``FieldInfo.description`` while it builds each model class
(``use_attribute_docstrings``), but that finds and parses the class's source for every model at every
start: about a tenth of ``probe run --once`` (docs/performance.md). Only docs and their tests need the
text, so it is read here, on demand.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

from pydantic import BaseModel

__all__ = ["option_docs"]


def option_docs(model: type[BaseModel]) -> dict[str, str]:
    """``{field: documentation}`` for every documented field of ``model`` (inherited fields included)."""
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if issubclass(cls, BaseModel) and cls is not BaseModel:
            docs.update(_attribute_docstrings(cls))
    for name, info in model.model_fields.items():
        if info.description:
            docs[name] = info.description
    return {name: docs[name] for name in model.model_fields if name in docs}


def _attribute_docstrings(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (built in a REPL, or from bytecode only)
        return {}
    if source[:1].isspace():  # a multi-line string less indented than the class body
        source = "def _wrapper():\n" + source
    stmt = ast.parse(source).body[0]
    if isinstance(stmt, ast.FunctionDef):
        stmt = stmt.body[0]
    if not isinstance(stmt, ast.ClassDef):
        return {}
    found = {}
    for field, doc in zip(stmt.body, stmt.body[1:], strict=False):
        if (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name) and isinstance(doc, ast.Expr)
                and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)):
            found[field.target.id] = inspect.cleandoc(doc.value.value)
    return found
