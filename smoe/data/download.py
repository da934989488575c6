"""Download Google's Quick, Draw! files into a local cache, atomically and with format checks.

URL layout (the layout of Google's bucket, ``base_url`` being its ``full`` folder):

=============  =========================================  ==============================
format         URL                                        cache path
=============  =========================================  ==============================
numpy_bitmap   ``{base_url}/numpy_bitmap/{category}.npy``   ``{cache}/numpy_bitmap/{category}.npy``
simplified     ``{base_url}/simplified/{category}.ndjson``  ``{cache}/simplified/{category}.ndjson``
sketchrnn      ``{base_url}/../sketchrnn/{category}.npz``   ``{cache}/sketchrnn/{category}.npz``
=============  =========================================  ==============================

Category names keep Google's spelling (spaces are URL-encoded). The cache dir is ``$SMOE_DATA``, else
the user cache dir of "smoe-study"; the base URL is ``$SMOE_BASE_URL``, else Google's bucket; with
``$SMOE_OFFLINE=1`` nothing is downloaded.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

import platformdirs
from tqdm.auto import tqdm

from smoe.data.categories import GOOGLE_CATEGORIES, canonical_category
from smoe.data.errors import DataError
from smoe.data.readers import inspect_numpy_bitmap, iter_simplified, read_sketchrnn_stroke3
from smoe.fileio import make_temporary

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://storage.googleapis.com/quickdraw_dataset/full"
FORMATS = {"numpy_bitmap": ".npy", "simplified": ".ndjson", "sketchrnn": ".npz"}
DEFAULT_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 20


def default_cache_dir() -> Path:
    """Return ``$SMOE_DATA`` if set, else the user cache dir of "smoe-study"."""
    configured = os.environ.get("SMOE_DATA", "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_cache_dir("smoe-study"))


def resolve_cache_dir(cache_dir: str | Path | None) -> Path:
    return default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()


def resolve_base_url(base_url: str | None) -> str:
    url = base_url or os.environ.get("SMOE_BASE_URL", "").strip() or DEFAULT_BASE_URL
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise DataError(f"base_url must be an http, https or file URL, got {url!r}")
    return url.rstrip("/")


def resolve_offline(offline: bool | None) -> bool:
    if offline is not None:
        return bool(offline)
    return os.environ.get("SMOE_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def cached_path(cache_dir: Path, category: str, fmt: str = "numpy_bitmap") -> Path:
    """Return where the file of ``category`` in format ``fmt`` lives in the cache dir."""
    return cache_dir / fmt / f"{category}{FORMATS[fmt]}"


def bitmap_path(cache_dir: Path, category: str) -> Path:
    return cached_path(cache_dir, category, "numpy_bitmap")


def file_url(base_url: str, category: str, fmt: str) -> str:
    """Return the URL of one file in a bucket laid out like Google's (see the module docstring)."""
    name = urllib.parse.quote(f"{category}{FORMATS[fmt]}")
    if fmt == "sketchrnn":
        return urllib.parse.urljoin(base_url + "/", f"../sketchrnn/{name}")
    return f"{base_url}/{fmt}/{name}"


def validate_file(path: Path, fmt: str, *, thorough: bool = True) -> None:
    """Raise DataError unless ``path`` is a well-formed file of format ``fmt``.

    numpy_bitmap checks the header and the file size. With ``thorough=False`` the other formats
    check only that the file is complete: the last ndjson line parses, or the npz directory reads.
    That is fast enough to run on every cached file. With ``thorough=True`` every drawing is checked.
    """
    if fmt == "numpy_bitmap":
        inspect_numpy_bitmap(path)
    elif fmt == "simplified":
        if thorough:
            for _ in iter_simplified(path):
                pass
        else:
            _check_last_line(path)
    elif thorough:
        read_sketchrnn_stroke3(path)
    else:
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise DataError(f"{path}: not a valid .npz file ({error}); the file may be truncated") from error


def download(
    categories: Sequence[str],
    fmt: str = "numpy_bitmap",
    *,
    cache_dir: str | Path | None = None,
    base_url: str | None = None,
    offline: bool | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[Path]:
    """Download the files of ``categories`` in format ``fmt`` into the cache dir; return their paths.

    A file already in the cache that passes the quick format check is kept. Each download goes to a
    temporary file in the target folder, is checked against Content-Length and the format, and is
    then renamed into place, so the cache never contains a partial or invalid file.

    Parameters
    ----------
    categories : sequence of str
        Category names in Google's spelling (underscores accepted for spaces).
    fmt : {"numpy_bitmap", "simplified", "sketchrnn"}
    cache_dir : path, optional
        Defaults to :func:`default_cache_dir`.
    base_url : str, optional
        Defaults to ``$SMOE_BASE_URL``, else :data:`DEFAULT_BASE_URL`.
    offline : bool, optional
        Never touch the network; a missing file raises DataError. Defaults to ``$SMOE_OFFLINE``.
    progress : bool
        Show a progress bar (only when stderr is a terminal).
    timeout : float
        Seconds to wait for the server on connect and on each read.
    """
    if fmt not in FORMATS:
        raise DataError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if isinstance(categories, str):
        categories = (categories,)
    names = [canonical_category(name, GOOGLE_CATEGORIES) for name in categories]
    cache = resolve_cache_dir(cache_dir)
    url_base = resolve_base_url(base_url)
    is_offline = resolve_offline(offline)

    paths = []
    for name in names:
        target = cached_path(cache, name, fmt)
        if target.exists():
            try:
                validate_file(target, fmt, thorough=False)
            except DataError as error:
                if is_offline:
                    raise DataError(f"{error}; offline mode is on, so it cannot be downloaded again") from None
                logger.warning("replacing invalid cached file: %s", error)
            else:
                logger.debug("already cached: %s", target)
                paths.append(target)
                continue

        url = file_url(url_base, name, fmt)
        if is_offline:
            raise DataError(
                f"{target} is missing and offline mode is on (SMOE_OFFLINE or offline=True); "
                f"turn it off to download {url}"
            )
        _fetch(url, target, fmt, progress=progress, timeout=timeout)
        paths.append(target)
    return paths


def _fetch(url: str, target: Path, fmt: str, *, progress: bool, timeout: float) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s to %s", url, target)
    handle, temporary_name = make_temporary(target, suffix=".part")
    temporary = Path(temporary_name)
    try:
        with os.fdopen(handle, "wb") as file:
            received, expected = _stream(url, file, target.name, progress=progress, timeout=timeout)
        if expected is not None and received != expected:
            raise DataError(f"download of {url} is truncated: received {received} of {expected} bytes")
        try:
            validate_file(temporary, fmt, thorough=True)
        except DataError as error:
            raise DataError(f"downloaded file from {url} is invalid: {error}") from None
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("saved %s (%d bytes)", target, received)


def _stream(url: str, file, label: str, *, progress: bool, timeout: float) -> tuple[int, int | None]:
    request = urllib.request.Request(url, headers={"User-Agent": "smoe-study"})
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            show = progress and sys.stderr.isatty()
            with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not show) as bar:
                while chunk := response.read(_CHUNK_BYTES):
                    file.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as error:
        raise DataError(f"download failed: HTTP {error.code} {error.reason} for {url}") from None
    except urllib.error.URLError as error:
        raise DataError(f"download failed: cannot reach {url} ({error.reason})") from None
    except (TimeoutError, socket.timeout):
        raise DataError(f"download failed: {url} timed out after {timeout:g} s") from None
    except http.client.IncompleteRead as error:
        raise DataError(
            f"download of {url} is truncated: the connection closed after {received + len(error.partial)} bytes"
        ) from None
    except (OSError, http.client.HTTPException) as error:  # connection reset and similar failures
        raise DataError(f"download failed: {url} ({error!r})") from None
    return received, expected


def _check_last_line(path: Path) -> None:
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        size = file.tell()
        if size == 0:
            raise DataError(f"{path}: file is empty")
        file.seek(max(0, size - (1 << 20)))
        tail = file.read()
    lines = [line for line in tail.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path}: contains no drawings")
    try:
        json.loads(lines[-1])
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: last line is invalid JSON ({error}); the file may be truncated") from None
