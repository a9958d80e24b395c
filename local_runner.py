"""Runs the pipeline locally with LocalDagRunner (`make run`): flags in, create_pipeline out.

    python local_runner.py                          # the embedded set, CPU, a few minutes
    python local_runner.py --data-root /data/ucf101 --split 1 --variant swin_t \\
        --pretrained swin_tiny_patch244_window877_kinetics400_1k.pth
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # the project's one Keras (tf_keras), before any import

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from pipeline import progress  # noqa: E402

progress.configure(verbose="--verbose" in sys.argv)  # before TensorFlow, TFX and Beam load


def parse_args(argv=None) -> argparse.Namespace:
    from pipeline import cli, configs

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-root",
        help="UCF101 root or folder-per-class videos (default: the embedded set, generated "
        f"under {configs.SYNTHETIC_DATA_ROOT} if missing)",
    )
    cli.add_pipeline_flags(parser)
    parser.add_argument("--serving-dir", default=configs.SERVING_DIR)
    parser.add_argument("--pipeline-root", default=configs.PIPELINE_ROOT)
    parser.add_argument("--metadata", default=configs.METADATA_PATH, help="ML Metadata SQLite")
    parser.add_argument("--verbose", action="store_true", help="show every log line")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    from tfx import v1 as tfx

    from data import synthetic
    from pipeline import cli, configs, report
    from pipeline.pipeline import create_pipeline

    if args.data_root:
        data_root = args.data_root
        schema_path = args.schema or cli.default_schema(data_root)
        ingest, training, min_accuracy, beam_args = (
            configs.INGEST_OPTIONS,
            configs.TRAIN_OPTIONS,
            configs.MIN_ACCURACY,
            configs.BEAM_PIPELINE_ARGS,
        )
    else:
        data_root = str(synthetic.ensure(configs.SYNTHETIC_DATA_ROOT, configs.SYNTHETIC_SEED))
        schema_path = args.schema or configs.SYNTHETIC_SCHEMA
        ingest, training, min_accuracy, beam_args = (
            configs.SYNTHETIC_INGEST_OPTIONS,
            configs.SYNTHETIC_TRAIN_OPTIONS,
            configs.SYNTHETIC_MIN_ACCURACY,
            configs.SYNTHETIC_BEAM_PIPELINE_ARGS,
        )
    if args.pretrained:
        args.pretrained = os.path.abspath(args.pretrained)
    training = cli.train_options(training, args)
    beam_args = cli.beam_pipeline_args(beam_args, args)
    if args.min_accuracy is not None:
        min_accuracy = args.min_accuracy
    os.makedirs(os.path.dirname(args.metadata), exist_ok=True)
    since = report.newest_artifact_id_at(args.metadata)
    serving_dir = os.path.abspath(os.path.join(args.serving_dir, args.model_name))
    started = time.time()
    failure = None
    try:
        tfx.orchestration.LocalDagRunner().run(
            create_pipeline(
                pipeline_name=configs.PIPELINE_NAME,
                pipeline_root=os.path.abspath(args.pipeline_root),
                data_root=os.path.abspath(data_root),
                serving_dir=serving_dir,
                ucf_split=args.split,
                ingest_options=ingest,
                train_options=training,
                min_accuracy=min_accuracy,
                schema_path=schema_path,
                allow_anomalies=args.allow_anomalies,
                validate_only=args.validate_only,
                metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                    args.metadata
                ),
                beam_pipeline_args=beam_args,
            )
        )
    except Exception as error:  # shown in the summary, then re-raised with --verbose
        failure = error
        if args.verbose:
            raise
    result = report.collect(args.metadata, since)
    # Under this run's pipeline root: another run's report (another root) is never overwritten.
    report_dir = os.path.join(os.path.abspath(args.pipeline_root), "report")
    plots = report.write_plots(result, report_dir)
    lines = [
        f"Pipeline {'FAILED' if failure else 'finished'} in {progress.duration(time.time() - started)}"
        f" ({training.variant}, {training.clip_frames}x{training.image_size}x"
        f"{training.image_size} clips, data: {data_root})."
    ]
    if failure:
        last_line = (str(failure).strip().splitlines() or [""])[-1]
        lines.append(f"Error: {type(failure).__name__}: {last_line}")
    if args.validate_only:
        lines.append(
            "Validation only: ExampleValidator's report is under "
            f"{os.path.join(args.pipeline_root, 'ExampleValidator', 'anomalies')}"
        )
    else:
        lines += report.summary_lines(result, min_accuracy)
    if plots or result.model_run_dir:
        lines.append(f"Report: {', '.join(plots)}" if plots else "Report: no plots")
    if result.model_run_dir:
        lines.append(f"TensorBoard: tensorboard --logdir {result.model_run_dir}")
    lines += [
        "Next:",
        f"  serve it:      python -m serving --model-dir {serving_dir}",
        "  real UCF101:   python local_runner.py --data-root /data/ucf101 --split 1 "
        "--pretrained swin_tiny_patch244_window877_kinetics400_1k.pth",
        "  on Kubeflow:   python kubeflow_runner.py compile --help",
    ]
    os.makedirs(report_dir, exist_ok=True)
    with open(os.path.join(report_dir, "summary.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines), flush=True)
    return 1 if failure else 0


if __name__ == "__main__":
    code = main()
    if "--verbose" not in sys.argv:
        # TensorFlow's function finalizers print "Exception ignored ..." during interpreter
        # teardown; the run is over and every file is closed, so leave without the teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)
