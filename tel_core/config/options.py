"""Options classes described for people: each field's type, default and doc.

An option is documented the Sphinx way, with a ``#:`` comment on the lines just above
the field (or after it on the same line)::

    @attrs.frozen
    class RoPEOptions:
        #: Base of the rotation frequencies.
        theta: float = 10000.0

The doc then sits beside the code, Sphinx autodoc renders it, and ``tel plugins`` shows
it. Comments are read from the source with ``ast`` and ``tokenize``; a class whose source
cannot be read (a zipped or compiled plugin) simply has no docs.
"""

from __future__ import annotations

import ast
import functools
import inspect
import io
import textwrap
import tokenize
import typing
from typing import Any

import attrs

from tel_core.config.serialise import to_dict

#: Stands for the default of an option that has none (it must be given).
REQUIRED = "(required)"


@attrs.frozen
class OptionInfo:
    """One field of an options class, as ``tel plugins`` shows it."""

    name: str
    type: str  # the annotation as written in the source
    default: Any  # plain data (lists, not tuples), or REQUIRED
    doc: str  # the field's ``#:`` comment, joined into one line; "" if none

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def describe_options(cls: type) -> list[OptionInfo]:
    """Every field of the attrs class ``cls``, in definition order."""
    docs = option_docs(cls)
    return [
        OptionInfo(field.name, _type_name(field.type), _default(field), docs.get(field.name, ""))
        for field in attrs.fields(cls)
    ]


def option_docs(cls: type) -> dict[str, str]:
    """The ``#:`` doc of each documented field of ``cls`` (inherited fields included)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):  # bases first, so a subclass may re-document
        docs.update(_class_docs(klass))
    return docs


@functools.cache
def _class_docs(klass: type) -> dict[str, str]:
    try:
        lines, _ = inspect.getsourcelines(klass)
    except (OSError, TypeError):
        return {}
    source = textwrap.dedent("".join(lines))
    try:
        tree = ast.parse(source)
        comments = {
            tok.start[0]: (tok.string, tok.line[: tok.start[1]].strip() != "")
            for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT
        }
    except (SyntaxError, tokenize.TokenError):
        return {}
    cls_node = next(node for node in tree.body if isinstance(node, ast.ClassDef))
    docs = {}
    for stmt in cls_node.body:
        names = _assigned_names(stmt)
        if not names:
            continue
        doc = []
        line = stmt.lineno - 1  # comments directly above, up to the first other line
        while line in comments and comments[line][0].startswith("#:") and not comments[line][1]:
            doc.insert(0, comments[line][0][2:].strip())
            line -= 1
        trailing = comments.get(stmt.lineno) or comments.get(stmt.end_lineno or stmt.lineno)
        if not doc and trailing and trailing[1] and trailing[0].startswith("#:"):
            doc = [trailing[0][2:].strip()]
        if doc:
            for name in names:
                docs[name] = " ".join(part for part in doc if part)
    return docs


def _assigned_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return [stmt.target.id]
    if isinstance(stmt, ast.Assign):
        return [t.id for t in stmt.targets if isinstance(t, ast.Name)]
    return []


def _type_name(annotation: Any) -> str:
    if annotation is None:
        return "any"
    if isinstance(annotation, str):  # `from __future__ import annotations`: as written
        return annotation
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _default(field: attrs.Attribute) -> Any:
    default = field.default
    if default is attrs.NOTHING:
        return REQUIRED
    if isinstance(default, attrs.Factory):
        if default.takes_self:
            return "(computed)"
        default = default.factory()
    return to_dict(default, keep_none=True)
