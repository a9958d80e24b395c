"""The span resolvers' decisions (components/spans.py), from real folders and a real registry."""

from __future__ import annotations

import json
import pathlib

import pytest

from components import spans as spans_lib
from data import spans
from model import options as model_options


def _videos(root, *names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())


@pytest.fixture
def layout(tmp_path):
    data, registry, serving = tmp_path / "data", tmp_path / "registry", tmp_path / "serving"
    _videos(data, "span-0/Run/a.avi", "span-0/Walk/b.avi")
    serving.mkdir()
    return str(data), str(registry), str(serving)


def _serve(serving, version, trained_on):
    """A pushed version carrying its training record (model/train.py writes it at export)."""
    folder = pathlib.Path(serving, version)
    _videos(folder, "saved_model.pb")
    record = folder / model_options.SERVED_RECORD
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({model_options.TRAINED_ON: trained_on}))


def test_new_spans_then_the_registered_group_as_it_was_ingested(layout, tmp_path):
    data, registry, _ = layout
    first = spans_lib.resolve_ingest(data, spans.DEFAULT_PATTERN, registry)
    assert [s["span"] for s in first["spans"]] == [0]
    assert first["spans"][0]["fingerprint"] == spans.fingerprint(f"{data}/span-0")
    assert spans_lib.registered_examples(registry, first) is None
    spans_lib.register(registry, first, "/root/examples/1")
    # Nothing new: the same value, so VideoExampleGen's cache key is the same.
    assert spans_lib.resolve_ingest(data, spans.DEFAULT_PATTERN, registry) == first
    assert spans_lib.registered_examples(registry, first) == "/root/examples/1"
    _videos(tmp_path / "data", "span-1/Run/c.avi", "span-2/Walk/d.avi")
    both = spans_lib.resolve_ingest(data, spans.DEFAULT_PATTERN, registry)
    assert [s["span"] for s in both["spans"]] == [1, 2]
    spans_lib.register(registry, both, "/root/examples/2")
    entry = spans_lib.read_registry(registry)[2]
    assert entry["group"] == [1, 2] and entry["examples"] == "/root/examples/2"
    assert spans_lib.resolve_ingest(data, spans.DEFAULT_PATTERN, registry) == both
    # A span's files changed after it was registered under another fingerprint: not the same.
    changed = json.loads(json.dumps(both))
    changed["spans"][0]["fingerprint"] = "other"
    assert spans_lib.registered_examples(registry, changed) is None


def test_registered_spans_of_another_data_root_are_not_this_ones(layout, tmp_path):
    data, registry, _ = layout
    _videos(tmp_path / "other", "span-0/Run/a.avi")
    other = spans_lib.resolve_ingest(str(tmp_path / "other"), spans.DEFAULT_PATTERN, registry)
    spans_lib.register(registry, other, "/root/examples/other")
    mine = spans_lib.resolve_ingest(data, spans.DEFAULT_PATTERN, registry)
    assert mine["spans"][0]["path"] == f"{data}/span-0"
    assert spans_lib.registered_examples(registry, mine) is None


def test_the_plan_trains_on_the_window_unless_the_served_model_was_trained_on_it(layout, tmp_path):
    data, registry, serving = layout
    plan, version = spans_lib.resolve_plan(data, spans.DEFAULT_PATTERN, registry, serving)
    assert version == "" and plan["train"] and plan["spans"] == [0] and plan["examples"] == []
    spans_lib.register(
        registry, spans_lib.resolve_ingest(data, spans.DEFAULT_PATTERN, registry), "/e/0"
    )
    _serve(serving, "100", plan["trained_on"])
    plan, version = spans_lib.resolve_plan(data, spans.DEFAULT_PATTERN, registry, serving)
    assert version == "100" and not plan["train"]
    assert "the served model 100 was trained on these spans" in plan["reason"]
    again, _ = spans_lib.resolve_plan(
        data, spans.DEFAULT_PATTERN, registry, serving, train_without_new_data=True
    )
    assert again["train"] and again["spans"] == [0]
    # Two new spans: the window holds every span; the earlier one is read where it is stored.
    _videos(tmp_path / "data", "span-1/Run/c.avi", "span-2/Walk/d.avi")
    plan, _ = spans_lib.resolve_plan(data, spans.DEFAULT_PATTERN, registry, serving)
    assert plan["train"] and plan["spans"] == [0, 1, 2] and plan["examples"] == ["/e/0"]
    assert [n for n, _ in plan["trained_on"]] == [0, 1, 2]
    # The last span only: still every span being ingested now (one Examples artifact).
    last, _ = spans_lib.resolve_plan(data, spans.DEFAULT_PATTERN, registry, serving, window=1)
    assert last["spans"] == [1, 2] and last["examples"] == []
    spans_lib.register(
        registry, spans_lib.resolve_ingest(data, spans.DEFAULT_PATTERN, registry), "/e/12"
    )
    _videos(tmp_path / "data", "span-3/Run/e.avi")
    last2, _ = spans_lib.resolve_plan(data, spans.DEFAULT_PATTERN, registry, serving, window=2)
    assert last2["spans"] == [2, 3] and last2["examples"] == ["/e/12"]


def test_span_ranges_read_as_a_person_writes_them():
    assert spans_lib.span_ranges([5, 0, 1, 2]) == "0-2, 5"
    assert spans_lib.span_ranges([]) == "none"


@pytest.mark.parametrize("component", ["NewSpans", "TrainingPlan"])
def test_a_resolver_without_a_driver_resolves_itself(layout, component):
    """On Kubeflow no driver fills `resolved`: the executor resolves; locally the driver's
    result is used as it is (it is what the cache key holds)."""
    data, registry, serving = layout
    properties = {
        "data_root": data,
        "span_registry": registry,
        "span_pattern": spans.DEFAULT_PATTERN,
        "serving_dir": serving,
        "window": 0,
        "train_without_new_data": False,
        "trainer_settings": json.dumps({model_options.OPTIONS_KEY: "{}"}),
    }
    driver = {"NewSpans": spans_lib._NewSpansDriver, "TrainingPlan": spans_lib._TrainingPlanDriver}
    resolved = driver[component].resolve(properties)
    fn = getattr(spans_lib, component).EXECUTOR_SPEC.executor_class._FUNCTION
    names = set(fn.__code__.co_varnames[: fn.__code__.co_argcount])
    arguments = {k: v for k, v in properties.items() if k in names}
    assert fn(**arguments) == fn(**arguments, resolved=spans_lib.dumps(resolved))
    if component == "TrainingPlan":
        config = json.loads(resolved["trainer_config"])
        assert config[model_options.OPTIONS_KEY] == "{}"  # the Trainer's settings, untouched
        assert config[model_options.SPANS_KEY]["spans"] == [0]
