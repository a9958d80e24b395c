"""`make bench`: every benchmark in sequence, each writing JSON under benchmarks/results/.

Benchmarks measure speed on a quiet machine; tests never time anything.
"""

import argparse
import importlib
import sys

# input_speed after model_speed: it compares the input pipeline with the measured step rate.
BENCHMARKS = (
    "benchmarks.model_speed",
    "benchmarks.input_speed",
    "benchmarks.train_memory",
    "benchmarks.ingest_speed",
    "benchmarks.serving_load",
    "benchmarks.evaluator_memory",
    "benchmarks.export_speed",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", choices=[b.split(".")[-1] for b in BENCHMARKS], nargs="*")
    args = parser.parse_args(argv)
    for name in BENCHMARKS:
        if args.only and name.split(".")[-1] not in args.only:
            continue
        print(f"== {name}", flush=True)
        module = importlib.import_module(name)
        module.main(["--quick"] if args.quick else [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
