"""s3:// for TFX's file API (tfx.dsl.io.fileio), over data.storage (Beam's S3 client, boto3).

TFX's own s3:// goes through TensorFlow, which needs tensorflow-io for it, and tensorflow-io 0.37.1
aborts the process at exit after using S3 (see data/storage.py). Importing this module registers
the file system, preferred to TensorFlow's for s3:// only: then TFX's Pusher can push to an s3://
serving directory and LatestPushedModel can copy the served model from it. Folders are prefixes:
makedirs is a no-op and a folder exists while some object lies under it.
"""

from __future__ import annotations

import fnmatch
import types

from tfx.dsl.io import filesystem, filesystem_registry

from data import storage


class S3Filesystem(filesystem.Filesystem):
    SUPPORTED_SCHEMES = ["s3://"]

    @staticmethod
    def open(name, mode="r"):
        return storage.open(name, mode)

    @staticmethod
    def copy(src, dst, overwrite=False):
        if not overwrite and storage.exists(dst):
            raise OSError(f"Destination file {dst!r} already exists and overwrite is false.")
        storage.copy(src, dst)

    @staticmethod
    def exists(path):
        return storage.exists(path)

    @staticmethod
    def glob(pattern):
        folder = pattern.split("*")[0].rpartition("/")[0]
        return sorted(
            f"{top}/{name}"
            for top, dirs, files in storage.walk(folder)
            for name in dirs + files
            if fnmatch.fnmatchcase(f"{top}/{name}", pattern)
        )

    @staticmethod
    def isdir(path):
        return storage.isdir(path)

    @staticmethod
    def listdir(path):
        return storage.listdir(path)

    @staticmethod
    def makedirs(path):
        del path  # prefixes need no folders

    @staticmethod
    def mkdir(path):
        del path

    @staticmethod
    def remove(path):
        storage.remove(path)

    @staticmethod
    def rename(src, dst, overwrite=False):
        S3Filesystem.copy(src, dst, overwrite)
        storage.remove(src)

    @staticmethod
    def rmtree(path):
        if not storage.isdir(path):
            raise filesystem.NotFoundError(f"{path} is not a folder")
        storage.rmtree(path)

    @staticmethod
    def stat(path):
        return types.SimpleNamespace(length=storage.size(path))

    @staticmethod
    def walk(top, topdown=True, onerror=None):
        del onerror
        entries = list(storage.walk(top))
        yield from entries if topdown else reversed(entries)


# Lower is preferred; TensorFlow's file system is registered at 10 for '', gs://, hdfs://, s3://.
filesystem_registry.DEFAULT_FILESYSTEM_REGISTRY.register(S3Filesystem, priority=5)
