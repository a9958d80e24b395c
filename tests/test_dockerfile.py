"""The Kubeflow image's Dockerfile agrees with the lock and the compiled spec (no Docker engine
here: its install lines run under sh against the real lock, the rest is read)."""

import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
LOCK = (ROOT / "requirements.lock").read_text()


def _pins(text: str) -> set[str]:
    return {line for line in text.splitlines() if line and not line.startswith("#")}


def _section(name: str) -> set[str]:
    """The pins under the lock's `# <name>` header, up to the next header."""
    sections = re.split(r"^# (runtime|gpu|test-only)\b.*$", LOCK, flags=re.M)
    return _pins(sections[sections.index(name) + 1])


@pytest.mark.parametrize("gpu", ["0", "1"])
def test_the_image_installs_the_runtime_pins_and_with_gpu_1_the_cuda_wheels(gpu, tmp_path):
    run = re.search(r"^RUN (.*?)(?=^\S)", DOCKERFILE, flags=re.M | re.S).group(1)
    lines = [part.strip() for part in run.replace("\\\n", " ").split("&&")]
    extract = [p for p in lines if "requirements.lock" in p and "requirements.txt" in p]
    script = " && ".join(extract).replace("/tmp/requirements.txt", str(tmp_path / "r.txt"))
    subprocess.run(
        ["sh", "-c", script], cwd=ROOT, check=True, env={"GPU": gpu, "PATH": "/usr/bin:/bin"}
    )
    installed = _pins((tmp_path / "r.txt").read_text())
    expected = _section("runtime") | (_section("gpu") if gpu == "1" else set())
    assert installed == expected
    assert any(p.startswith("tensorflow==") for p in installed)
    assert any(p.startswith("nvidia-cudnn-cu12==") for p in installed) == (gpu == "1")
    assert not any(p.startswith("torch==") for p in installed)  # test-only stays out


def test_beam_harness_matches_the_locked_beam():
    (beam,) = [p for p in _section("runtime") if p.startswith("apache-beam==")]
    version = beam.split("==")[1]
    assert f"FROM apache/beam_python3.11_sdk:{version} " in DOCKERFILE.replace(
        "COPY --from=", "FROM "
    )
    assert "python:3.11" in DOCKERFILE


def test_the_image_holds_every_package_the_pipeline_runs():
    """Every module the compiled spec names (executors, run_fn, preprocessing_fn) is copied in."""
    from pipeline import configs

    copied = set(re.findall(r"^COPY (\w+) \./\1$", DOCKERFILE, flags=re.M))
    named = {
        "components",  # VideoExampleGen, AnomaliesGate, LatestPushedModel, Evaluator executors
        configs.PREPROCESSING_FN.split(".")[0],
        configs.RUN_FN.split(".")[0],
        "pipeline",  # configs and schemas, read by the runners
        "data",  # decoding, imported by the ExampleGen executor
    }
    assert named <= copied
    assert "PYTHONPATH=/pipeline" in DOCKERFILE and "TF_USE_LEGACY_KERAS=1" in DOCKERFILE
