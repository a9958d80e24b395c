"""Flags and JSON from an options dataclass (data/options.py), as every entry point uses them."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from data.ingest_options import IngestOptions
from data.options import JsonOptions, add_flags, from_flags, option
from model.options import TrainOptions


@dataclasses.dataclass(frozen=True)
class Example(JsonOptions):
    count: int = option(2, "how many")
    rate: float = option(0.5, "how fast")
    name: str = option("", "what")
    limit: int | None = option(8, "at most (0: none)")
    flip: bool = option(True, "mirror")


def _parse(argv, **kwargs):
    parser = argparse.ArgumentParser()
    add_flags(parser, Example, **kwargs)
    return parser, parser.parse_args(argv)


def test_flags_change_only_what_was_given():
    _, args = _parse(["--count", "3", "--limit", "0", "--no-flip"])
    assert from_flags(Example(), args) == Example(count=3, limit=None, flip=False)
    _, args = _parse([])
    assert from_flags(Example(rate=0.25), args) == Example(rate=0.25)  # base kept


def test_flag_types_defaults_and_help_come_from_the_fields():
    parser, args = _parse(["--rate", "0.125", "--name", "x"], defaults=Example(count=7))
    assert (args.count, args.rate, args.name) == (7, 0.125, "x")
    assert from_flags(Example(), args) == Example(count=7, rate=0.125, name="x")
    with pytest.raises(SystemExit):
        parser.parse_args(["--count", "two"])
    text = parser.format_help()
    assert "--limit LIMIT" in text and "at most (0: none) (default: 8)" in text
    assert "--name NAME" in text and "what (default: none)" in text


def test_a_subset_of_fields():
    parser, args = _parse(["--count", "4"], names=("count",))
    assert "--rate" not in parser.format_help()
    assert from_flags(Example(), args, ("count",)) == Example(count=4)


def test_json_round_trip_of_the_projects_options():
    for options in (IngestOptions(frame_stride=3, max_frames=None), TrainOptions(epochs=2)):
        assert type(options).from_json(options.to_json()) == options
