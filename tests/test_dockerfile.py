"""The Kubeflow image's Dockerfile agrees with the lock and the compiled spec, and installs on its
base image (no Docker engine here: its install lines run under sh against the real lock and, where
the package index is reachable, against the index for the image's platform; the rest is read)."""

import importlib.metadata
import os
import pathlib
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
LOCK = (ROOT / "requirements.lock").read_text()
UV = pathlib.Path(sys.executable).with_name("uv")
# The image's platform: python:3.11-slim on x86_64 (glibc 2.36+), as tools/lock.sh resolves it.
PLATFORM = ("--python-platform", "x86_64-manylinux_2_28", "--python-version", "3.11")


def _pins(text: str) -> set[str]:
    return {line for line in text.splitlines() if line and not line.startswith("#")}


def _section(name: str) -> set[str]:
    """The pins under the lock's `# <name>` header, up to the next header."""
    sections = re.split(r"^# (runtime|gpu|test-only)\b.*$", LOCK, flags=re.M)
    return _pins(sections[sections.index(name) + 1])


def _image_pins() -> dict[str, str]:
    """{name: version} of every pin the GPU image installs (runtime + gpu)."""
    pins = (p.split("==") for p in _section("runtime") | _section("gpu"))
    return {canonicalize_name(name): version for name, version in pins}


def _stages() -> dict[str, str]:
    """Each build stage's text by its name (`FROM ... AS name`); the last one is "image"."""
    stages = {}
    for chunk in re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1:]:
        named = re.match(r"\S+ AS (\S+)", chunk.splitlines()[0])
        stages[named.group(1) if named else "image"] = chunk
    return stages


def _run_commands(stage: str) -> list[str]:
    """The `&&`-joined commands of a stage's RUN instructions, one string each."""
    runs = re.findall(r"^RUN (.*?)(?=^\S|\Z)", stage, flags=re.M | re.S)
    return [part.strip() for run in runs for part in run.replace("\\\n", " ").split("&&")]


def _source_built() -> set[str]:
    """The names the wheels stage builds: its `grep -E '^(a|b|...)=='` of the lock."""
    (pattern,) = re.findall(
        r"grep -E '\^\(([^)]*)\)==' requirements.lock > source-pins", DOCKERFILE
    )
    return {canonicalize_name(name) for name in pattern.split("|")}


def _compiled_here() -> set[str]:
    """Installed pins whose wheel uv built on this machine from C/C++ sources: their WHEEL tag's
    platform is the bare `linux_x86_64` (a wheel from the index says manylinux)."""
    pins, compiled = _image_pins(), set()
    for dist in importlib.metadata.distributions():
        wheel = (dist.read_text("WHEEL") or "").splitlines()
        platforms = [line.rsplit("-", 1)[-1] for line in wheel if line.startswith("Tag:")]
        if any("linux_x86_64" in platform.split(".") for platform in platforms):
            compiled.add(canonicalize_name(dist.metadata["Name"]))
    return compiled & set(pins)


@pytest.mark.parametrize("gpu", ["0", "1"])
def test_the_image_installs_the_runtime_pins_and_with_gpu_1_the_cuda_wheels(gpu, tmp_path):
    commands = _run_commands(_stages()["image"])
    extract = [c for c in commands if "requirements.lock" in c and "requirements.txt" in c]
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


def test_pins_that_compile_are_built_in_a_stage_with_a_compiler_and_the_image_builds_nothing():
    """pyfarmhash 0.3.2 has no wheel for Python 3.11 and python:3.11-slim has no compiler: the
    wheels stage (with g++) builds the source-only pins, the image installs wheels only."""
    stages = _stages()
    assert set(stages) == {"wheels", "image"}, "a wheels stage with a compiler, then the image"
    base = {name: stage.splitlines()[0].split()[0] for name, stage in stages.items()}
    assert base["wheels"] == base["image"] == "python:3.11-slim"  # the wheels' ABI is the image's
    wheels = _run_commands(stages["wheels"])
    assert any(re.search(r"apt-get install .*\bg\+\+", c) for c in wheels)
    assert any(c.startswith("/opt/build/bin/pip wheel") and "-w /wheels" in c for c in wheels)
    compiled = _compiled_here()
    assert "pyfarmhash" in compiled  # the shared venv was installed from this lock by uv
    assert compiled <= _source_built(), f"compiled from sources, not built: {compiled}"
    assert _source_built() <= set(_image_pins()), "the wheels stage names pins the lock lacks"
    image = _run_commands(stages["image"])
    assert not any("apt-get" in c or "g++" in c for c in image)
    (install,) = [c for c in image if c.startswith("uv pip install")]
    assert {"--no-deps", "--no-build", "--find-links /tmp/wheels"} <= set(
        re.findall(r"--[\w-]+(?: /\S+)?", install)
    )
    assert "COPY --from=wheels /wheels /tmp/wheels" in stages["image"]


def _index() -> str:
    return os.environ.get("UV_DEFAULT_INDEX") or os.environ.get(
        "PIP_INDEX_URL", "https://pypi.org/simple/"
    )


def _index_reachable() -> bool:
    try:
        with urllib.request.urlopen(_index().rstrip("/") + "/pyfarmhash/", timeout=10):
            return True
    except OSError:
        return False


def test_both_stages_install_every_pin_on_the_image_platform(tmp_path):
    """The wheels stage's commands build its wheels here (a compiler exists); then the image's
    install command, as a dry run for cp311 manylinux x86_64 with --no-build, finds a wheel for
    every runtime and gpu pin: on the index or among those built."""
    if not _index_reachable():
        pytest.skip(f"the package index {_index()} is unreachable: the stages need it")
    stages = _stages()
    # The wheels stage, its paths under tmp_path; pip and uv see no local wheel folders.
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "UV_FIND_LINKS")}
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}:/usr/bin:/bin"
    shutil.copy(ROOT / "requirements.lock", tmp_path)
    paths = {"/opt/build": str(tmp_path / "build"), "/wheels": str(tmp_path / "wheels")}
    script = " && ".join(_run_commands(stages["wheels"]))
    for image_path, here in paths.items():
        script = script.replace(image_path, here)
    subprocess.run(["sh", "-c", script], cwd=tmp_path, env=env, check=True, capture_output=True)
    built = {parse_wheel_filename(w.name)[:2] for w in (tmp_path / "wheels").glob("*.whl")}
    pins = _image_pins()
    assert {name for name, _ in built} == _source_built()
    assert all(str(version) == pins[name] for name, version in built)
    # The image's install, with GPU=1 (every pin), as a dry run into a throwaway target.
    image = _run_commands(stages["image"])
    (install,) = [c for c in image if c.startswith("uv pip install")]
    lines = [c for c in image if "requirements.lock" in c and "requirements.txt" in c]
    script = " && ".join([*lines, f"{UV}{install[2:]}"])
    script = script.replace("/tmp/wheels", paths["/wheels"])
    script = script.replace("/tmp/requirements.txt", str(tmp_path / "r.txt"))
    dry_run = [*PLATFORM, "--dry-run", "--target", str(tmp_path / "target")]
    result = subprocess.run(
        ["sh", "-c", f"{script} {' '.join(dry_run)}"],
        cwd=ROOT,
        env={**env, "GPU": "1"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Would install {len(pins)} packages" in result.stderr


def _path_without_compilers(tmp_path) -> str:
    """A PATH with every program of this machine's but the C and C++ compilers."""
    programs = tmp_path / "bin"
    programs.mkdir()
    compiler = re.compile(r"(^|-)(gcc|g\+\+|c\+\+|cc|clang|clang\+\+)(-[\d.]+)?$")
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for program in pathlib.Path(folder).glob("*"):
            link = programs / program.name
            if not compiler.search(program.name) and not link.exists():
                link.symlink_to(program)
    return str(programs)


def test_make_setup_without_a_compiler_names_the_package_it_needs_before_installing(tmp_path):
    venv = tmp_path / "venv"
    result = subprocess.run(
        ["make", "setup", "GPU=0", f"VENV={venv}", f"PYTHON={sys._base_executable}"],
        cwd=ROOT,
        env={"PATH": _path_without_compilers(tmp_path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    version = _image_pins()["pyfarmhash"]
    assert f"pyfarmhash {version} (required by tensorflow-data-validation)" in result.stderr
    assert "apt-get install g++" in result.stderr
    assert not venv.exists()  # nothing was installed


@pytest.mark.skipif(not shutil.which("g++"), reason="this machine has no C++ compiler")
def test_the_compiler_check_passes_with_a_compiler_or_with_pyfarmhash_installed(tmp_path):
    check = [str(ROOT / "tools" / "check_compiler.sh"), sys._base_executable, "requirements.lock"]
    subprocess.run(check, cwd=ROOT, check=True)
    # Once the venv holds the locked pyfarmhash, no compiler is needed (nothing to compile).
    no_compiler = {"PATH": _path_without_compilers(tmp_path)}
    subprocess.run([*check, sys.executable], cwd=ROOT, env=no_compiler, check=True)
    assert subprocess.run(check, cwd=ROOT, env=no_compiler, capture_output=True).returncode == 1


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

    copied = set(re.findall(r"^COPY (\w+) \./\1$", _stages()["image"], flags=re.M))
    named = {
        "components",  # VideoExampleGen, AnomaliesGate, LatestPushedModel, Evaluator executors
        configs.PREPROCESSING_FN.split(".")[0],
        configs.RUN_FN.split(".")[0],
        "pipeline",  # configs and schemas, read by the runners
        "data",  # decoding, imported by the ExampleGen executor
    }
    assert named <= copied
    assert "PYTHONPATH=/pipeline" in DOCKERFILE and "TF_USE_LEGACY_KERAS=1" in DOCKERFILE
