"""Options classes described: `#:` docs, types as written, defaults as plain data."""

from __future__ import annotations

import attrs

from tel_core.config.options import REQUIRED, describe_options, option_docs


@attrs.frozen(kw_only=True)
class Documented:
    #: One line above.
    above: int = 1
    #: Two lines
    #: above, joined.
    joined: float = 2.0
    trailing: str = "x"  #: After the field.
    # An ordinary comment documents nothing.
    plain: bool = False
    #: A blank line separates this doc from the field.

    detached: int = 0
    pairs: tuple[float, float] = (0.9, 0.95)
    #: Several lines of a field, documented above.
    paths: list[str] = attrs.field(
        factory=list,  #: not this one
    )
    needed: int  #: Must be given.


@attrs.frozen(kw_only=True)
class Child(Documented):
    #: Documented again.
    above: int = 3
    extra: int = 4  #: Only here.


def test_hash_colon_comments_above_or_after_a_field_are_its_doc():
    assert option_docs(Documented) == {
        "above": "One line above.",
        "joined": "Two lines above, joined.",
        "trailing": "After the field.",
        "paths": "Several lines of a field, documented above.",
        "needed": "Must be given.",
    }


def test_a_subclass_inherits_docs_and_may_change_them():
    docs = option_docs(Child)
    assert docs["above"] == "Documented again."
    assert docs["joined"] == "Two lines above, joined."
    assert docs["extra"] == "Only here."


def test_a_class_without_source_has_no_docs():
    made = attrs.make_class("Made", {"x": attrs.field(default=1)})
    assert option_docs(made) == {}
    assert describe_options(made)[0].default == 1


def test_types_as_written_and_defaults_as_plain_data():
    info = {o.name: o for o in describe_options(Documented)}
    assert info["pairs"].type == "tuple[float, float]"
    assert info["pairs"].default == [0.9, 0.95]  # TOML and JSON have arrays, not tuples
    assert info["paths"].default == []  # a factory's value
    assert info["needed"].default is REQUIRED and info["needed"].required
    assert not info["above"].required
    assert [o.name for o in describe_options(Documented)] == [
        f.name for f in attrs.fields(Documented)
    ]


def test_types_of_classes_without_postponed_annotations():
    made = attrs.make_class("Made", {"x": attrs.field(type=int, default=1)})
    assert describe_options(made)[0].type == "int"
