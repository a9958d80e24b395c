"""Compiles the pipeline for Kubeflow Pipelines v2, and submits or schedules it.

    python kubeflow_runner.py compile --output pipeline.yaml     # every default from configs
    python kubeflow_runner.py submit --endpoint URL [settings]   # compile, then one run
    python kubeflow_runner.py schedule --endpoint URL --cron "0 0 3 * * 0" [settings]

Every step runs in --image (this repo's Dockerfile; `--build-arg GPU=1` for the Trainer's CUDA
wheels). Only the Trainer asks for accelerators (--gpus, --gpu-type), CPU and memory, so the Beam
steps do not land on GPU nodes. A .yaml output is the PipelineSpec Kubeflow Pipelines uploads; a
.json output is the PipelineJob Vertex AI Pipelines runs. `schedule` makes a recurring run
(KFP's six-field cron, seconds first): scheduled retraining, each run warm-started from and
judged against the model being served. On a multi-user Kubeflow, `submit` and `schedule` take the
profile namespace and credentials (kubeflow_client.py).
"""

from model import keras_env

keras_env.use_tf_keras()  # before any TensorFlow import

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

import kubeflow_client  # noqa: E402
import kubeflow_platform  # noqa: E402
from pipeline import cli, configs  # noqa: E402

ENTRYPOINT = ["python", "-m", "pipeline.kfp_entrypoint"]  # every step's container command


def _settings_parser() -> argparse.ArgumentParser:
    """The flags every subcommand takes: what the compiled pipeline does and where."""
    parser = argparse.ArgumentParser(add_help=False)
    where = parser.add_argument_group("where")
    where.add_argument(
        "--image", default=configs.KUBEFLOW_IMAGE, help="image every step runs in (%(default)s)"
    )
    where.add_argument(
        "--pipeline-root",
        default=configs.KUBEFLOW_PIPELINE_ROOT,
        help="artifact root (%(default)s); any path TensorFlow and Beam both read",
    )
    where.add_argument(
        "--data-root",
        default=configs.KUBEFLOW_DATA_ROOT,
        help="UCF101 root or folder-per-class videos (%(default)s)",
    )
    where.add_argument(
        "--serving-dir",
        help="where blessed models are pushed, as <serving-dir>/<model-name>/<version>/ "
        "(default: <pipeline-root>/serving): the bucket TF Serving or KServe reads",
    )
    where.add_argument(
        "--s3-endpoint",
        help="S3-compatible store of s3:// data roots and serving dirs, e.g. MinIO's "
        "http://minio-service.kubeflow:9000 (every step's AWS_ENDPOINT_URL; credentials: "
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from a secret, or the pod's AWS role)",
    )
    where.add_argument("--pipeline-name", default=configs.PIPELINE_NAME)
    where.add_argument(
        "--output",
        default=f"{configs.PIPELINE_NAME}.yaml",
        help=".yaml: Kubeflow Pipelines' PipelineSpec; .json: Vertex AI's PipelineJob",
    )
    what = parser.add_argument_group("pipeline and training")
    cli.add_pipeline_flags(what, gpus_default=configs.KUBEFLOW_TRAINER_GPUS)
    trainer = parser.add_argument_group("the Trainer's pod")
    trainer.add_argument(
        "--gpu-type",
        default=configs.KUBEFLOW_GPU_TYPE,
        help="accelerator type: the Kubernetes resource name on Kubeflow Pipelines "
        "(%(default)s); Vertex AI's names there, e.g. NVIDIA_L4",
    )
    trainer.add_argument("--trainer-cpu", type=float, default=configs.KUBEFLOW_TRAINER_CPU)
    trainer.add_argument(
        "--trainer-memory", default=configs.KUBEFLOW_TRAINER_MEMORY, help="e.g. 32G or 64Gi"
    )
    several = parser.add_argument_group(
        "training on several machines (the Trainer's pod only launches the job and waits for it)"
    )
    several.add_argument(
        "--workers",
        type=int,
        default=1,
        help="machines, each with --gpus of --gpu-type (and --trainer-cpu/-memory for a TFJob); "
        "above 1: a TFJob of Kubeflow's Training Operator, or with --vertex-project a Vertex AI "
        "custom job",
    )
    several.add_argument(
        "--tfjob-service-account",
        help="a TFJob's replicas run as this service account (default: the one the pipeline's "
        "steps run as, read by the Trainer's pod at run time: it holds their storage access)",
    )
    several.add_argument(
        "--tfjob-deadline-hours",
        type=float,
        default=configs.KUBEFLOW_TFJOB_DEADLINE_HOURS,
        help="a TFJob fails, naming its replicas' states, and is deleted this long after it is "
        "created, waiting for nodes included (%(default)s)",
    )
    several.add_argument("--vertex-project", help="GCP project: train as a Vertex AI custom job")
    several.add_argument("--vertex-region", default=configs.VERTEX_REGION)
    several.add_argument("--machine-type", default=configs.VERTEX_MACHINE_TYPE, help="on Vertex")
    kubeflow_platform.add_flags(parser)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    settings = _settings_parser()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("compile", parents=[settings], help="write the pipeline spec to --output")
    submit = commands.add_parser(
        "submit", parents=[settings], help="compile, then create a run on --endpoint"
    )
    schedule = commands.add_parser(
        "schedule", parents=[settings], help="compile, then create a recurring run (retraining)"
    )
    for command in (submit, schedule):
        kubeflow_client.add_flags(command)
        command.add_argument("--experiment", default=configs.PIPELINE_NAME)
    schedule.add_argument(
        "--cron", required=True, help='six fields, seconds first: "0 0 3 * * 0" = Sundays 03:00'
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers counts machines: 1 or more")
    if args.tfjob_service_account and (args.workers == 1 or args.vertex_project):
        parser.error("--tfjob-service-account is for a TFJob: --workers 2 or more, no Vertex")
    if not args.tfjob_deadline_hours * 3600 >= 1:
        parser.error(f"--tfjob-deadline-hours {args.tfjob_deadline_hours}: a positive duration")
    if args.vertex_project and args.gpus and args.gpu_type == configs.KUBEFLOW_GPU_TYPE:
        parser.error("--vertex-project: name a Vertex accelerator, e.g. --gpu-type NVIDIA_L4")
    if args.command != "compile" and not args.output.endswith((".yaml", ".yml")):
        parser.error("submit and schedule upload a .yaml spec: use --output NAME.yaml")
    try:
        args.pods = kubeflow_platform.settings(args)
        if args.command != "compile":  # before compiling: a missing token file fails at once
            args.api = kubeflow_client.connection(args)
    except ValueError as error:
        parser.error(str(error))
    return args


def _vertex_training(args: argparse.Namespace) -> dict | None:
    """Vertex AI CustomJob arguments: a chief pool and a pool of the other workers."""
    if not args.vertex_project:
        return None
    machine = {"machine_type": args.machine_type}
    if args.gpus:
        machine |= {"accelerator_type": args.gpu_type, "accelerator_count": args.gpus}
    pools = [
        {
            "machine_spec": machine,
            "replica_count": count,
            "container_spec": {"image_uri": args.image},
        }
        for count in (1, args.workers - 1)
        if count
    ]
    return {
        "project": args.vertex_project,
        "region": args.vertex_region,
        "worker_pool_specs": pools,
    }


def _tfjob(args: argparse.Namespace) -> dict | None:
    """TFJob settings (components/tfjob_trainer.py) for --workers > 1 on Kubeflow."""
    if args.workers == 1 or args.vertex_project:
        return None
    return {
        "image": args.image,
        "workers": args.workers,
        "gpus": args.gpus,
        "gpu_type": args.gpu_type,
        "cpu": _cpu(args),
        "memory": args.trainer_memory,
        **kubeflow_platform.tfjob_scheduling(args.pods),
        "deadline_seconds": round(args.tfjob_deadline_hours * 3600),
        **({"service_account": args.tfjob_service_account} if args.tfjob_service_account else {}),
    }


def _cpu(args: argparse.Namespace) -> str:
    """--trainer-cpu as Kubernetes writes it: "8", "0.5"."""
    return str(args.trainer_cpu).removesuffix(".0")


def _trainer_resources(args: argparse.Namespace):
    """The Trainer pod's CPU, memory and accelerators, as the spec's ResourceSpec."""
    from kfp.compiler import compiler_utils
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
    cpu, memory = _cpu(args), args.trainer_memory
    # Both forms, as the KFP SDK writes them: numbers (older backends) and strings.
    resources = spec(
        cpu_limit=args.trainer_cpu,
        cpu_request=args.trainer_cpu,
        resource_cpu_limit=cpu,
        resource_cpu_request=cpu,
        memory_limit=compiler_utils._memory_to_float(memory),
        memory_request=compiler_utils._memory_to_float(memory),
        resource_memory_limit=memory,
        resource_memory_request=memory,
    )
    if args.gpus:
        resources.accelerator.CopyFrom(
            spec.AcceleratorConfig(
                type=args.gpu_type,
                count=args.gpus,
                resource_type=args.gpu_type,
                resource_count=str(args.gpus),
            )
        )
    return resources


def _image_path(path: str | None) -> str | None:
    """A file of this repository as the image sees it: relative to its WORKDIR, the repo root."""
    if not path or "://" in path:
        return path
    full, root = os.path.abspath(path), os.path.dirname(os.path.abspath(__file__))
    return os.path.relpath(full, root) if full.startswith(root + os.sep) else path


def compile_pipeline(args: argparse.Namespace) -> str:
    """Writes the pipeline spec to args.output and returns its path."""
    from tfx import v1 as tfx

    from components import spans
    from pipeline import kfp_entrypoint
    from pipeline.pipeline import create_pipeline

    serving_dir = args.serving_dir or kfp_entrypoint.default_serving_dir(args.pipeline_root)
    vertex_training, tfjob = _vertex_training(args), _tfjob(args)
    beam_args = cli.beam_pipeline_args(configs.BEAM_PIPELINE_ARGS, args)
    kfp_entrypoint.check_storage(
        args.pipeline_root, args.data_root, serving_dir, beam_args, bool(vertex_training or tfjob)
    )
    pipeline = create_pipeline(
        pipeline_name=args.pipeline_name,
        span_registry=kfp_entrypoint.default_span_registry(args.pipeline_root, args.pipeline_name),
        run_id=spans.KFP_RUN_ID,
        **cli.span_settings(args),
        pipeline_root=args.pipeline_root,
        data_root=args.data_root,
        serving_dir=f"{serving_dir.rstrip('/')}/{args.model_name}",
        ucf_split=args.split,
        ingest_options=configs.INGEST_OPTIONS,
        train_options=cli.train_options(configs.TRAIN_OPTIONS, args),
        min_accuracy=configs.MIN_ACCURACY if args.min_accuracy is None else args.min_accuracy,
        schema_path=_image_path(args.schema or cli.default_schema(args.data_root)),
        allow_anomalies=args.allow_anomalies,
        validate_only=args.validate_only,
        beam_pipeline_args=beam_args,
        vertex_training=vertex_training,
        tfjob=tfjob,
        worker_image=args.image,
    )
    if not (vertex_training or tfjob):  # else the pod only launches the job's machines
        for component in pipeline.components:
            if component.id == "Trainer":
                component.with_platform_config(_trainer_resources(args))
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        # Pipeline spec 2.1: Kubeflow Pipelines' backend reads only its parameter constants.
        # The entry point: TFX's, once input artifacts have types (pipeline/kfp_entrypoint.py).
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=args.image,
            default_commands=ENTRYPOINT,
            use_pipeline_spec_2_1=True,
        ),
    )
    job = runner.run(pipeline, write_out=False)
    kubeflow_platform.name_parameter_producers(job["pipelineSpec"])
    # The span resolvers look at the data and the serving dir in every run (components/spans.py).
    kubeflow_platform.run_every_time(job["pipelineSpec"], spans.RESOLVERS)
    if args.s3_endpoint:  # what data.storage's boto3 reads in every step
        for executor in job["pipelineSpec"]["deploymentSpec"]["executors"].values():
            if "container" in executor:
                env = executor["container"].setdefault("env", [])
                env.append({"name": "AWS_ENDPOINT_URL", "value": args.s3_endpoint})
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        if args.output.endswith((".yaml", ".yml")):
            spec = job["pipelineSpec"]
            # A spec uploaded alone (UI, kfp.Client) keeps its artifact root: TFX's steps read and
            # write through TensorFlow's file systems, which KFP's default minio:// is not.
            spec["defaultPipelineRoot"] = args.pipeline_root
            # Volumes, tolerations, node selector: the second document, which TFX does not write.
            trains = not (vertex_training or tfjob)
            pods = kubeflow_platform.executor_configs(spec, args.pipeline_root, args.pods, trains)
            kubeflow_platform.write_yaml(spec, kubeflow_platform.platform_spec(pods), f)
        else:
            json.dump(job, f, indent=2, sort_keys=True)
    return args.output


def submit(args: argparse.Namespace, package: str) -> str:
    """Creates a run (submit) or a recurring run (schedule) of `package` and returns its id, or
    exits saying why the API refused, which credentials were sent and what to try."""
    try:
        with args.api.explained():
            return _create(args, package)
    except kubeflow_client.KubeflowApiError as error:
        raise SystemExit(f"{args.command}: {error}") from None


def _create(args: argparse.Namespace, package: str) -> str:
    """kfp.Client's calls: the experiment (in the namespace), then the run or recurring run."""
    client, namespace = args.api.client(), args.api.namespace
    # The spec's own caching options (None): every step cached but the span resolvers, which
    # look at the data and the served model in every run; compile --no-cache turns all off.
    if args.command == "submit":
        run = client.create_run_from_pipeline_package(
            package,
            experiment_name=args.experiment,
            namespace=namespace,  # the experiment's; the run lives there
            pipeline_root=args.pipeline_root,
            enable_caching=None,
        )
        return run.run_id
    experiment = client.create_experiment(args.experiment, namespace=namespace)
    job = client.create_recurring_run(
        experiment_id=experiment.experiment_id,
        job_name=f"{args.pipeline_name}-retraining",
        cron_expression=args.cron,
        pipeline_package_path=package,
        pipeline_root=args.pipeline_root,
        enable_caching=None,  # the spec's own options, as for submit
        max_concurrency=1,  # a run never overlaps the previous one
        no_catchup=True,  # after a pause, one run, not one per missed slot
    )
    return job.recurring_run_id


def main(argv=None) -> None:
    args = parse_args(argv)
    package = compile_pipeline(args)
    print(f"wrote {package}")
    if args.command != "compile":
        what = "run" if args.command == "submit" else "recurring run"
        when = f", cron {args.cron!r}" if args.command == "schedule" else ""
        created = submit(args, package)
        where = f" in namespace {args.api.namespace}" if args.api.namespace else ""
        print(f"created {what} {created} on {args.api.endpoint}{where}{when}")


if __name__ == "__main__":
    main()
