"""Every Kubeflow step's entry point: TFX's own, once each input artifact has its type.

Kubeflow Pipelines' open-source backend hands each upstream artifact over as
`type: {instanceSchema: ""}` (it keeps no artifact schemas), while TFX's entry point takes the
artifact's class from that schema: every step with an input would fail with "'NoneType' object
has no attribute 'get'" (tensorflow/tfx#7768). The component's own inputs spec
(--json_serialized_inputs_spec_args, pipeline spec 2.1) declares each input's type: the empty
ones are filled from it, then TFX's entry point runs unchanged. Where types arrive filled in
(Vertex AI Pipelines), nothing changes.

    python -m pipeline.kfp_entrypoint --executor_class_path ... --json_serialized_invocation_args ...
"""

import json

from absl import app
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor as tfx_entrypoint


def with_input_types(executor_input: dict, inputs_spec: dict) -> dict:
    """`executor_input` (ExecutorInput JSON) with each untyped input artifact typed by the spec."""
    declared = inputs_spec.get("artifacts", {})
    for key, listed in executor_input.get("inputs", {}).get("artifacts", {}).items():
        for artifact in listed.get("artifacts", []):
            if not any(artifact.get("type", {}).values()) and key in declared:
                artifact["type"] = declared[key]["artifactType"]
    return executor_input


def parse_flags(argv):
    args, beam_args = tfx_entrypoint._parse_flags(argv)  # TFX's own flags, then Beam's
    args.json_serialized_invocation_args = json.dumps(
        with_input_types(
            json.loads(args.json_serialized_invocation_args),
            json.loads(args.json_serialized_inputs_spec_args or "{}"),
        )
    )
    return args, beam_args


if __name__ == "__main__":
    app.run(tfx_entrypoint.main, flags_parser=parse_flags)
