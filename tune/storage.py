"""Where a study lives: a local folder, or a folder under an s3:// or gs:// URI.

The driver writes study.yaml and optuna.db itself. For remote storage it keeps them in a local
folder and copies them up with pyarrow, because SQLite cannot open a database on S3 or GCS.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

OPTUNA_DB = "optuna.db"


@dataclass
class StudyLocation:
    """Where a study lives: a local folder, or a folder under an s3:// or gs:// URI."""

    storage_path: str
    name: str

    @property
    def is_remote(self) -> bool:
        return "://" in self.storage_path

    @property
    def uri(self) -> str:
        return f"{self.storage_path.rstrip('/')}/{self.name}"

    @property
    def local_dir(self) -> Path:
        """The study folder itself, or, for a remote study, the driver's local copy of its files."""
        if not self.is_remote:
            return Path(self.storage_path) / self.name
        scheme, rest = self.storage_path.split("://", 1)
        return Path(tempfile.gettempdir()) / "smoe-study-driver" / scheme / rest.strip("/") / self.name

    @property
    def optuna_db(self) -> Path:
        return self.local_dir / OPTUNA_DB


def _remote_fs(location: StudyLocation):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(location.uri)


def exists(location: StudyLocation) -> bool:
    if not location.is_remote:
        return location.local_dir.exists()
    import pyarrow.fs

    filesystem, path = _remote_fs(location)
    return filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def upload(location: StudyLocation, file_name: str) -> None:
    if not location.is_remote:
        return
    import pyarrow.fs

    filesystem, path = _remote_fs(location)
    pyarrow.fs.copy_files(str(location.local_dir / file_name), f"{path}/{file_name}",
                          destination_filesystem=filesystem)


def download(location: StudyLocation, file_name: str) -> bool:
    if not location.is_remote:
        return (location.local_dir / file_name).exists()
    import pyarrow.fs

    filesystem, path = _remote_fs(location)
    if filesystem.get_file_info(f"{path}/{file_name}").type == pyarrow.fs.FileType.NotFound:
        return False
    location.local_dir.mkdir(parents=True, exist_ok=True)
    pyarrow.fs.copy_files(f"{path}/{file_name}", str(location.local_dir / file_name),
                          source_filesystem=filesystem)
    return True
