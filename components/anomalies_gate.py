"""AnomaliesGate: bad data does not reach training. Fails the run when ExampleValidator found
anomalies in any split, naming them, unless `allow_anomalies` says someone has looked.

Wire it between ExampleValidator and what must not run on bad data:

    gate = AnomaliesGate(anomalies=example_validator.outputs["anomalies"], allow_anomalies=False)
    transform.add_upstream_node(gate)

The anomalies report stays where ExampleValidator wrote it (`<anomalies uri>/Split-*/`); the
failure message names the component, each split, feature and description, and that report.
"""

# No `from __future__ import annotations` here: @component reads the signature's real types.
import os

from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

ANOMALIES_FILE = "SchemaDiff.pb"  # what ExampleValidator writes per split


class DataAnomaliesError(RuntimeError):
    """ExampleValidator found anomalies and the run may not go on with this data."""


def read_anomalies(artifact: types.Artifact) -> dict[str, anomalies_pb2.Anomalies]:
    """{split: Anomalies} of an ExampleAnomalies artifact, every split it holds."""
    result = {}
    for split in artifact_utils.decode_split_names(artifact.split_names):
        path = os.path.join(artifact_utils.get_split_uri([artifact], split), ANOMALIES_FILE)
        result[split] = anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))
    return result


def describe(anomalies: dict[str, anomalies_pb2.Anomalies]) -> list[str]:
    """One line per anomaly: "[split] feature: short description: description"."""
    lines = []
    for split, found in anomalies.items():
        for feature, info in sorted(found.anomaly_info.items()):
            lines.append(f"[{split}] feature {feature!r}: {_text(info)}")
        if found.HasField("dataset_anomaly_info"):
            lines.append(f"[{split}] the data set: {_text(found.dataset_anomaly_info)}")
    return lines


def _text(info: anomalies_pb2.AnomalyInfo) -> str:
    short, long = info.short_description.strip(), info.description.strip()
    return f"{short}: {long}" if short and short not in long else long or short


def check(artifact: types.Artifact, allow_anomalies: bool) -> list[str]:
    """Raises DataAnomaliesError naming every anomaly unless allowed; returns their lines."""
    lines = describe(read_anomalies(artifact))
    if not lines:
        return lines
    producer = artifact.producer_component or "ExampleValidator"
    message = (
        f"{producer} found {len(lines)} anomalies against the schema:\n  "
        + "\n  ".join(lines)
        + f"\nReport: {artifact.uri}"
    )
    if allow_anomalies:
        logging.warning("%s\nallow_anomalies is set: going on with this data.", message)
        return lines
    raise DataAnomaliesError(
        f"{message}\nThe run stops here: no training on this data. Fix the data or the schema, or "
        "set allow_anomalies to train anyway."
    )


@component
def AnomaliesGate(  # noqa: N802 (a TFX component is named like a class)
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    allow_anomalies: Parameter[bool] = False,
):  # no return annotation: TFX takes only a TypedDict (or nothing) there
    """Fails when `anomalies` (ExampleValidator's output) holds any, unless allow_anomalies."""
    check(anomalies, allow_anomalies)
