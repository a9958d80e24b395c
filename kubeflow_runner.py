"""Compile the pipeline for Kubeflow Pipelines v2, and optionally submit or schedule it.

    python kubeflow_runner.py --image REGISTRY/video-swin-tfx:TAG \
        --pipeline-root gs://BUCKET/tfx --data-root gs://BUCKET/ucf101 [--output pipeline.yaml]
    # and, with a KFP endpoint: --endpoint URL [--experiment NAME] [--schedule "0 0 3 * * 0"]

Every step runs in --image (built from this repo's Dockerfile). --schedule takes KFP's
six-field cron (seconds first) and creates a recurring run: scheduled retraining.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # the project's one Keras (tf_keras), before TF loads

import argparse  # noqa: E402

from tfx import v1 as tfx  # noqa: E402

from pipeline import cli, configs  # noqa: E402
from pipeline.pipeline import create_pipeline  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--image", required=True, help="container image every step runs in")
    parser.add_argument(
        "--pipeline-root", required=True, help="artifact root, e.g. gs://bucket/tfx"
    )
    parser.add_argument("--data-root", required=True, help="UCF101 or folder-per-class videos")
    parser.add_argument(
        "--serving-dir",
        help="where blessed models are pushed (default: <pipeline-root>/serving), e.g. the "
        "bucket TF Serving or KServe reads",
    )
    cli.add_pipeline_flags(parser)
    parser.add_argument(
        "--beam-pipeline-args",
        default=" ".join(configs.BEAM_PIPELINE_ARGS),
        help="Beam flags, one string: --beam-pipeline-args='--runner=DataflowRunner --project=P'",
    )
    parser.add_argument("--pipeline-name", default=configs.PIPELINE_NAME)
    parser.add_argument("--output", default=f"{configs.PIPELINE_NAME}.yaml", help=".json or .yaml")
    parser.add_argument(
        "--endpoint", help="KFP API endpoint; when given, the pipeline is submitted"
    )
    parser.add_argument("--experiment", default=configs.PIPELINE_NAME)
    parser.add_argument("--schedule", help="six-field cron for a recurring run (needs --endpoint)")
    return parser.parse_args(argv)


def compile_pipeline(args: argparse.Namespace) -> str:
    """Writes the KFP v2 pipeline spec to args.output and returns its path."""
    serving_dir = args.serving_dir or f"{args.pipeline_root.rstrip('/')}/serving"
    pipeline = create_pipeline(
        pipeline_name=args.pipeline_name,
        pipeline_root=args.pipeline_root,
        data_root=args.data_root,
        serving_dir=f"{serving_dir.rstrip('/')}/{args.model_name}",
        ucf_split=args.split,
        ingest_options=configs.INGEST_OPTIONS,
        train_options=cli.train_options(configs.TRAIN_OPTIONS, args),
        min_accuracy=configs.MIN_ACCURACY if args.min_accuracy is None else args.min_accuracy,
        schema_path=args.schema or cli.default_schema(args.data_root),
        allow_anomalies=args.allow_anomalies,
        validate_only=args.validate_only,
        beam_pipeline_args=args.beam_pipeline_args.split(),
    )
    output_dir, filename = os.path.split(os.path.abspath(args.output))
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=args.image),
        output_dir=output_dir,
        output_filename=filename,
    )
    runner.run(pipeline)
    return args.output


def submit(args: argparse.Namespace, package: str) -> None:
    import kfp

    client = kfp.Client(host=args.endpoint)
    experiment = client.create_experiment(args.experiment)
    if args.schedule:
        client.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name=f"{args.pipeline_name}-retrain",
            cron_expression=args.schedule,
            pipeline_package_path=package,
            max_concurrency=1,
            no_catchup=True,
        )
    else:
        client.create_run_from_pipeline_package(package, experiment_name=args.experiment)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.schedule and not args.endpoint:
        raise SystemExit("--schedule needs --endpoint (the KFP API to create the recurring run on)")
    package = compile_pipeline(args)
    print(f"wrote {package}")
    if args.endpoint:
        submit(args, package)


if __name__ == "__main__":
    main()
