"""New data as spans: which spans a run ingests, which it trains on, and which it has ingested.

Kubeflow Pipelines runs no resolver nodes and no ExampleGen driver, and its pods do not reach ML
Metadata, so the decisions are made by steps of the pipeline, from files:

- **The registry** (`<registry>/span-<N>.json`, a folder beside the artifacts like the serving
  directory: local, gs:// or s3://): one entry per ingested span, written by `RegisterSpans` only
  after the span passed validation (after the AnomaliesGate). It names the Examples artifact that
  holds the span, so later runs train on it where it is: the examples are stored once.
- **NewSpans** outputs the spans this run ingests: every span under the data root that the
  registry lacks, with its fingerprint; when none is new, the newest registered group exactly as
  it was ingested. That value is VideoExampleGen's parameter: unchanged data gives an unchanged
  cache key, so a cache reuses ingestion and every step after it; without a cache VideoExampleGen
  finds the group registered and hands on its examples instead of ingesting them again.
- **TrainingPlan** outputs the Trainer's custom_config with the plan (`model.options.SPANS_KEY`:
  the window of spans to train on, the Examples of the earlier ones, whether to train) and the
  served model's version, which LatestPushedModel copies. Training is skipped when the window is
  what the served model was trained on (its record, pushed inside it), unless
  train_without_new_data.

Caching, checked against both runners' sources:
- Kubeflow Pipelines' driver keys a task on its input parameter *values*, input artifact ids,
  command and image (backend/src/v2/cacheutils/cache.go GenerateCacheKey). The two resolvers get
  the run's id as `run` ({{$.pipeline_job_uuid}}, substituted by the driver from 2.5) and are
  compiled with caching off (kubeflow_runner.py), so they run in every run; the steps after them
  take their outputs as parameters, so those are cached exactly while the values are the same.
- LocalDagRunner keys a node on its upstream artifacts themselves (their ML Metadata records),
  so a resolver that ran again would make every step after it run again. Here the resolvers'
  drivers resolve before the cache lookup and put the result in the exec properties (as TFX's
  file-based ExampleGen driver does with spans and fingerprints): a resolver, and everything
  after it, is cached exactly while its result is the same.
"""

# No `from __future__ import annotations` here: @component reads the signature's real types.
import datetime
import json
import posixpath

from absl import logging
from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.components.base import base_driver
from tfx.proto.orchestration import driver_output_pb2

from components.served_model import latest_version
from data import spans, storage
from model import options as model_options

ENTRY = "span-{}.json"
RESOLVED = "resolved"  # the exec property a local driver fills (empty on Kubeflow: no driver)
RUN = "run"  # the run's id on Kubeflow; empty locally (the driver's result keys the cache)
KFP_RUN_ID = "{{$.pipeline_job_uuid}}"  # KFP's driver substitutes it (2.5+)
RESOLVERS = ("NewSpans", "TrainingPlan")  # the steps that must run in every run


def dumps(value) -> str:
    """Canonical JSON: equal values give equal text, hence equal cache keys."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------- the registry


def read_registry(registry: str, data_root: str | None = None) -> dict[int, dict]:
    """span number -> its entry (those of spans under `data_root` only, when given)."""
    if not storage.isdir(registry):
        return {}
    entries = {}
    for name in storage.listdir(registry):
        if not (name.startswith("span-") and name.endswith(".json")):
            continue
        with storage.open(posixpath.join(registry, name), "r") as f:
            entry = json.load(f)
        if data_root is None or _under(entry["path"], data_root):
            entries[entry["span"]] = entry
    return entries


def _under(path: str, root: str) -> bool:
    root = root.rstrip("/")
    return path == root or path.startswith(root + "/")


def register(registry: str, ingest: dict, examples_uri: str) -> list[str]:
    """Records each span of `ingest` as held by the Examples at `examples_uri`."""
    group = [s["span"] for s in ingest["spans"]]
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    written = []
    storage.makedirs(registry)
    for span in ingest["spans"]:
        path = posixpath.join(registry, ENTRY.format(span["span"]))
        entry = {**span, "group": group, "examples": examples_uri, "registered": now}
        with storage.open(path, "w") as f:
            f.write(json.dumps(entry, indent=1, sort_keys=True))
        written.append(path)
    return written


def registered_examples(registry: str, ingest: dict) -> str | None:
    """The Examples holding exactly `ingest`'s spans (same folders and files), or None."""
    entries = read_registry(registry)
    uris = set()
    for span in ingest["spans"]:
        entry = entries.get(span["span"])
        same = entry and all(entry.get(k) == span[k] for k in ("path", "fingerprint"))
        if not same or sorted(entry["group"]) != sorted(s["span"] for s in ingest["spans"]):
            return None
        uris.add(entry["examples"])
    return uris.pop() if len(uris) == 1 else None


# ---------------------------------------------------------------- resolution


def resolve_ingest(data_root: str, pattern: str, registry: str) -> dict:
    """{"spans": [{"span", "path", "fingerprint"}, ...]}: the spans under `data_root` the registry
    lacks, or (none new) the newest registered group as it was ingested."""
    found = spans.list_spans(data_root, pattern)
    registered = read_registry(registry, data_root)

    def is_registered(span: spans.Span) -> bool:
        entry = registered.get(span.number)
        return bool(entry) and entry["path"] == span.path

    new = [s for s in found if not is_registered(s)]
    if new:
        group = [
            {"span": s.number, "path": s.path, "fingerprint": spans.fingerprint(s.path)}
            for s in new
        ]
    else:
        newest = registered[max(registered)]
        group = [
            {k: registered[n][k] for k in ("span", "path", "fingerprint")} for n in newest["group"]
        ]
    return {"spans": group}


def served_record(serving_dir: str, version: str) -> dict:
    """The training record the served model carries (model/train.py), {} when it has none."""
    path = posixpath.join(serving_dir, version, model_options.SERVED_RECORD)
    if not version or not storage.exists(path):
        return {}
    with storage.open(path, "r") as f:
        return json.load(f)


def resolve_plan(
    data_root: str,
    pattern: str,
    registry: str,
    serving_dir: str,
    window: int = 0,
    train_without_new_data: bool = False,
) -> tuple[dict, str]:
    """(the Trainer's plan, the served version's folder name or "").

    The plan: `spans` (the window: the last `window` spans, 0 = all, and always the whole group
    being ingested), `trained_on` ([span, fingerprint] pairs), `examples` (the Examples URIs of
    the window's spans this run does not ingest, in span order), `train` and `reason`.
    """
    ingest = resolve_ingest(data_root, pattern, registry)
    group = {s["span"]: s for s in ingest["spans"]}
    registered = read_registry(registry, data_root)
    numbers = sorted(set(registered) | set(group))
    chosen = sorted(set(numbers[-window:] if window > 0 else numbers) | set(group))
    examples = []
    for n in chosen:
        if n not in group and registered[n]["examples"] not in examples:
            examples.append(registered[n]["examples"])
    trained_on = [[n, (group.get(n) or registered[n])["fingerprint"]] for n in chosen]
    served = latest_version(serving_dir)
    version = posixpath.basename(served) if served else ""
    served_on = served_record(serving_dir, version).get(model_options.TRAINED_ON)
    if served_on == trained_on and not train_without_new_data:
        train, reason = False, f"the served model {version} was trained on these spans"
    elif served_on == trained_on:
        train, reason = True, "train_without_new_data: the served model's spans again"
    else:
        train, reason = (
            True,
            f"spans {span_ranges(chosen)}"
            + (
                f", the served model {version} on {span_ranges([n for n, _ in served_on])}"
                if served_on
                else ""
            ),
        )
    plan = {
        "spans": chosen,
        "trained_on": trained_on,
        "examples": examples,
        "train": train,
        "reason": reason,
    }
    return plan, version


def span_ranges(numbers) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    numbers, parts = sorted(numbers), []
    for n in numbers:
        if parts and parts[-1][1] == n - 1:
            parts[-1][1] = n
        else:
            parts.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in parts) or "none"


# ---------------------------------------------------------------- components


class _ResolvingDriver(base_driver.BaseDriver):
    """LocalDagRunner: resolve before the cache lookup, into the `resolved` exec property (so
    the cache key is the result). Kubeflow runs no drivers; the executor resolves there."""

    def run(self, execution_info):  # TFX's portable driver interface
        result = driver_output_pb2.DriverOutput()
        properties = dict(execution_info.exec_properties)
        result.exec_properties[RESOLVED].string_value = dumps(self.resolve(properties))
        return result


def _ingest_of(properties: dict) -> dict:
    return resolve_ingest(
        properties["data_root"], properties["span_pattern"], properties["span_registry"]
    )


def _plan_of(properties: dict) -> dict:
    plan, version = resolve_plan(
        properties["data_root"],
        properties["span_pattern"],
        properties["span_registry"],
        properties["serving_dir"],
        int(properties["window"]),
        bool(properties["train_without_new_data"]),
    )
    settings = json.loads(properties["trainer_settings"] or "{}")
    return {
        "trainer_config": dumps({**settings, model_options.SPANS_KEY: plan}),
        "served_version": version,
    }


class _NewSpansDriver(_ResolvingDriver):
    resolve = staticmethod(_ingest_of)


class _TrainingPlanDriver(_ResolvingDriver):
    resolve = staticmethod(_plan_of)


@component
def NewSpans(  # noqa: N802 (a TFX component is named like a class)
    data_root: Parameter[str],
    span_registry: Parameter[str],
    span_pattern: Parameter[str] = spans.DEFAULT_PATTERN,
    run: Parameter[str] = "",
    resolved: Parameter[str] = "",
) -> tfx.dsl.components.OutputDict(ingest=str):
    """`ingest`: the spans this run ingests (JSON, see resolve_ingest)."""
    del run  # only tells runs apart for Kubeflow's cache
    properties = {"data_root": data_root, "span_registry": span_registry}
    ingest = (
        json.loads(resolved)
        if resolved
        else _ingest_of(properties | {"span_pattern": span_pattern})
    )
    numbers = [s["span"] for s in ingest["spans"]]
    known = registered_examples(span_registry, ingest)
    logging.info(
        "Spans under %s: %s %s",
        data_root,
        span_ranges(numbers),
        f"ingested already (in {known})" if known else "to ingest",
    )
    return {"ingest": dumps(ingest)}


NewSpans.DRIVER_CLASS = _NewSpansDriver


@component
def TrainingPlan(  # noqa: N802 (a TFX component is named like a class)
    data_root: Parameter[str],
    span_registry: Parameter[str],
    serving_dir: Parameter[str],
    trainer_settings: Parameter[str],
    span_pattern: Parameter[str] = spans.DEFAULT_PATTERN,
    window: Parameter[int] = 0,
    train_without_new_data: Parameter[bool] = False,
    run: Parameter[str] = "",
    resolved: Parameter[str] = "",
) -> tfx.dsl.components.OutputDict(trainer_config=str, served_version=str):
    """`trainer_config`: `trainer_settings` (the Trainer's custom_config) plus the plan
    (model.options.SPANS_KEY);
    `served_version`: the folder name of the model being served ("" before the first push)."""
    del run  # only tells runs apart for Kubeflow's cache
    properties = {
        "data_root": data_root,
        "span_pattern": span_pattern,
        "span_registry": span_registry,
        "serving_dir": serving_dir,
        "window": window,
        "train_without_new_data": train_without_new_data,
        "trainer_settings": trainer_settings,
    }
    result = json.loads(resolved) if resolved else _plan_of(properties)
    plan = json.loads(result["trainer_config"])[model_options.SPANS_KEY]
    logging.info(
        "Training window: spans %s; %s (%s)",
        span_ranges(plan["spans"]),
        "training" if plan["train"] else "no training",
        plan["reason"],
    )
    return result


TrainingPlan.DRIVER_CLASS = _TrainingPlanDriver


@component
def RegisterSpans(  # noqa: N802 (a TFX component is named like a class)
    ingest: Parameter[str],
    examples_uri: Parameter[str],
    span_registry: Parameter[str],
):  # no return annotation: TFX takes only a TypedDict (or nothing) there
    """Records the validated spans of `ingest` as held by the Examples at `examples_uri`."""
    for path in register(span_registry, json.loads(ingest), examples_uri):
        logging.info("Registered %s", path)
