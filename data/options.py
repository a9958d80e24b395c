"""Settings as frozen dataclasses: one field per setting, its help text beside its default.

The same class gives the JSON a component records (`to_json`/`from_json`) and the command-line
flags of every entry point that exposes it (`add_flags`, then `from_flags`), so a setting's
name, type, default and help are written once. No TensorFlow or Beam import here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing


def option(default, help_text: str):
    """A dataclass field with its help text (the flag's help)."""
    return dataclasses.field(default=default, metadata={"help": help_text})


class JsonOptions:
    """JSON round trip for an options dataclass (sorted keys: the same options, the same text)."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        return cls(**json.loads(text))


def _flag_types(cls) -> dict[str, tuple[type, bool]]:
    """Per field: (the flag's type, whether None is allowed), from the field's annotation."""
    types_ = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
            (inner,) = [a for a in args if a is not type(None)]
            types_[name] = (inner, True)
        else:
            types_[name] = (hint, False)
    return types_


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_flags(
    parser: argparse.ArgumentParser,
    cls,
    names: typing.Iterable[str] | None = None,
    defaults=None,
    help_prefix: str = "",
) -> None:
    """One flag per field of `cls` (or those in `names`), e.g. `frame_stride` -> --frame-stride.

    With `defaults` (an instance), a flag's default is that instance's value; without, every
    flag defaults to None ("not given") and its help shows the class's default, so `from_flags`
    changes only what the user gave. Booleans get --x/--no-x.
    """
    fields, flag_types = {f.name: f for f in dataclasses.fields(cls)}, _flag_types(cls)
    for name in names or fields:
        field, (kind, _) = fields[name], flag_types[name]
        shown = getattr(defaults, name) if defaults is not None else field.default
        shown_text = "none" if shown in (None, "") else shown
        extra = {"action": argparse.BooleanOptionalAction} if kind is bool else {"type": kind}
        parser.add_argument(
            flag_name(name),
            default=shown if defaults is not None else None,
            help=f"{help_prefix}{field.metadata.get('help', '')} (default: {shown_text})",
            **extra,
        )


def from_flags(base, args: argparse.Namespace, names: typing.Iterable[str] | None = None):
    """`base` with every flag of `add_flags` that was given (not None); 0 means None for an
    optional number."""
    cls = type(base)
    flag_types, changes = _flag_types(cls), {}
    for field in dataclasses.fields(cls):
        if (names is not None and field.name not in names) or not hasattr(args, field.name):
            continue
        value = getattr(args, field.name)
        if value is None:
            continue
        if flag_types[field.name][1] and value == 0:
            value = None
        changes[field.name] = value
    return dataclasses.replace(base, **changes)
