"""The flags both runners share for arriving data and caching (pipeline/cli.py)."""

import argparse

import pytest

from data import spans
from pipeline import cli, configs


def _settings(*argv):
    parser = argparse.ArgumentParser()
    cli.add_pipeline_flags(parser)
    return cli.span_settings(parser.parse_args(list(argv)))


def test_defaults_cache_and_train_on_every_span_only_when_needed():
    assert _settings() == {
        "span_pattern": configs.SPAN_PATTERN,
        "span_window": 0,
        "train_without_new_data": False,
        "enable_cache": True,
    }


def test_flags_change_them():
    assert _settings(
        "--span-pattern",
        "{YYYY}-{MM}-{DD}",
        "--span-window",
        "3",
        "--train-without-new-data",
        "--no-cache",
    ) == {
        "span_pattern": "{YYYY}-{MM}-{DD}",
        "span_window": 3,
        "train_without_new_data": True,
        "enable_cache": False,
    }


def test_unusable_settings_fail_before_anything_runs():
    with pytest.raises(spans.SpanLayoutError, match="span pattern"):
        _settings("--span-pattern", "batch-{MM}")
    with pytest.raises(ValueError, match="--span-window"):
        _settings("--span-window", "-1")
