"""Files of data roots and serving directories: local paths, gs:// and s3:// (AWS S3 or MinIO).

TensorFlow 2.16 reads local paths and gs:// itself. Its S3 file system moved to tensorflow-io,
whose release for TF 2.16 (0.37.1) aborts the process at exit after any S3 access
(tensorflow/io#2039: "pure virtual method called", exit code 134), which Kubeflow Pipelines would
record as a failed step. s3:// therefore goes through Apache Beam's S3 client (boto3), which
Beam's workers have too. Its settings are boto3's environment variables:

    AWS_ENDPOINT_URL        MinIO or another S3-compatible store, e.g. http://minio-service.kubeflow:9000
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION (or IRSA / instance roles on AWS)

(MinIO's buckets are s3:// here: minio:// is Kubeflow Pipelines' own name for its artifact store.)
"""

from __future__ import annotations

import functools
import io
import posixpath

S3 = "s3://"


def is_s3(path) -> bool:
    return str(path).startswith(S3)


@functools.cache
def _s3io():
    from apache_beam.io.aws import s3io
    from apache_beam.options.pipeline_options import PipelineOptions

    # No S3Options given: boto3 takes endpoint, credentials and region from its environment.
    return s3io.S3IO(options=PipelineOptions([]))


def _gfile():
    import tensorflow as tf  # here: listing S3 or a local folder needs no TensorFlow

    return tf.io.gfile


def _dir_prefix(path: str) -> str:
    return path.rstrip("/") + "/"


def _s3_files(prefix: str, limit: int | None = None) -> list[str]:
    files = []
    for name, _ in _s3io().list_files(prefix):
        files.append(name)
        if limit and len(files) >= limit:
            break
    return files


def isdir(path: str) -> bool:
    """S3 has no folders: a prefix is one when some object lies under it."""
    if is_s3(path):
        return bool(_s3_files(_dir_prefix(path), limit=1))
    return _gfile().isdir(path)


def exists(path: str) -> bool:
    if is_s3(path):
        return _s3io().exists(path) or isdir(path)
    return _gfile().exists(path)


def listdir(path: str) -> list[str]:
    """Names directly under `path` (files and folders, without trailing slashes)."""
    if is_s3(path):
        prefix = _dir_prefix(path)
        return sorted({name[len(prefix) :].split("/")[0] for name in _s3_files(prefix)} - {""})
    return [name.rstrip("/") for name in _gfile().listdir(path)]  # gs:// folders end in /


def size(path: str) -> int:
    if is_s3(path):
        return _s3io().size(path)
    return _gfile().stat(path).length


def open(path: str, mode: str = "rb"):  # noqa: A001 (the file-like API's name)
    """A file object: "r"/"rb" read (seekable), "w"/"wb" write (the object appears on close)."""
    if not is_s3(path):
        return _gfile().GFile(path, mode)
    if mode not in ("r", "rb", "w", "wb"):
        raise ValueError(f"{path}: mode {mode!r} is not one of r, rb, w, wb")
    raw = _s3io().open(path, mode.replace("b", "") + "b")
    return raw if "b" in mode else io.TextIOWrapper(raw, encoding="utf-8")


def join(*parts: str) -> str:
    return posixpath.join(*parts)


# The rest serves TFX's file API on s3:// (components/s3_fileio.py): S3 paths only.


def walk(top: str):
    """(folder, sub-folder names, file names) from `top` down, as os.walk gives them."""
    prefix = _dir_prefix(top)
    tree: dict[str, tuple[set, list]] = {top.rstrip("/"): (set(), [])}
    for name in _s3_files(prefix):
        folder, _, file = name.rpartition("/")
        tree.setdefault(folder, (set(), []))[1].append(file)
        while folder != top.rstrip("/"):  # register every folder between top and the file
            parent, _, child = folder.rpartition("/")
            tree.setdefault(parent, (set(), []))[0].add(child)
            folder = parent
    if len(tree) == 1 and not tree[top.rstrip("/")][1]:
        return
    for folder in sorted(tree):
        subdirs, files = tree[folder]
        yield folder, sorted(subdirs), sorted(files)


def copy(src: str, dst: str) -> None:
    _s3io().copy(src, dst)


def remove(path: str) -> None:
    _s3io().delete(path)


def rmtree(path: str) -> None:
    _s3io().delete_tree(_dir_prefix(path))
