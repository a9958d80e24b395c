"""Runs the pipeline locally with LocalDagRunner (`make run`): flags in, create_pipeline out."""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # the project's one Keras (tf_keras), before any import

import argparse  # noqa: E402

from tfx import v1 as tfx  # noqa: E402

from data import synthetic  # noqa: E402
from pipeline import configs  # noqa: E402
from pipeline.pipeline import create_pipeline  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data-root",
        help="UCF101 root or folder-per-class videos (default: the embedded set, generated "
        f"under {configs.SYNTHETIC_DATA_ROOT} if missing)",
    )
    parser.add_argument("--split", type=int, default=configs.UCF_SPLIT, choices=(1, 2, 3))
    parser.add_argument(
        "--schema",
        help="curated schema.pbtxt to validate against (default with --data-root: infer)",
    )
    args = parser.parse_args(argv)
    if args.data_root:
        data_root, schema_path, options = args.data_root, args.schema, configs.INGEST_OPTIONS
    else:
        data_root = str(synthetic.ensure(configs.SYNTHETIC_DATA_ROOT, configs.SYNTHETIC_SEED))
        schema_path = args.schema or configs.SYNTHETIC_SCHEMA
        options = configs.SYNTHETIC_INGEST_OPTIONS
    tfx.orchestration.LocalDagRunner().run(
        create_pipeline(
            pipeline_name=configs.PIPELINE_NAME,
            pipeline_root=configs.PIPELINE_ROOT,
            data_root=os.path.abspath(data_root),
            ucf_split=args.split,
            ingest_options=options,
            schema_path=schema_path,
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                configs.METADATA_PATH
            ),
            beam_pipeline_args=configs.BEAM_PIPELINE_ARGS,
        )
    )


if __name__ == "__main__":
    main()
