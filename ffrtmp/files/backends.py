"""Which object store `--files` names: a directory (shared or not), or an S3-compatible bucket."""

from __future__ import annotations

from pathlib import Path

from ffrtmp.files.objects import LocalObjects, ObjectStore
from ffrtmp.files.s3 import S3Objects, is_s3_url


def open_object_store(files: str | Path) -> ObjectStore:
    """`s3://BUCKET/PREFIX` → the bucket (files/s3.py); anything else → that directory."""
    if isinstance(files, str) and is_s3_url(files):
        return S3Objects.from_url(files)
    return LocalObjects(Path(files).expanduser())
