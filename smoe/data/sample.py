"""The bundled sample: real Quick, Draw! bitmaps shipped inside the package.

Two files under ``sample/``, each an ``np.savez_compressed`` archive with one (N, 784) uint8 array per
category, keyed by Google's category name (``sample/README.md`` gives counts and provenance):

- ``quickdraw_paper.npz``: the five categories of the SMoE-VAE paper, unbalanced (250 to 4960).
- ``quickdraw_more.npz``: 15 further categories with 3000 drawings each.
"""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path

import numpy as np

from smoe.data.errors import DataError
from smoe.data.readers import read_npy_header

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
SAMPLE_FILES = (SAMPLE_DIR / "quickdraw_paper.npz", SAMPLE_DIR / "quickdraw_more.npz")


@functools.lru_cache(maxsize=None)
def _sample_index() -> dict[str, Path]:
    """Map each bundled category to the archive that contains it (reads only the zip directories)."""
    index = {}
    for path in SAMPLE_FILES:
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (OSError, zipfile.BadZipFile) as error:
            raise DataError(f"{path}: cannot read the bundled sample ({error})") from error
        for name in names:
            index[name.removesuffix(".npy")] = path
    return index


def available_sample_categories() -> tuple[str, ...]:
    """Return the categories in the bundled sample, in Google's spelling, paper categories first."""
    return tuple(_sample_index())


@functools.lru_cache(maxsize=None)
def _read_sample_array(path: Path, category: str) -> np.ndarray:
    # Decompressing takes tens of milliseconds per category; a study that loads the same data for
    # every trial in one process pays it once. The array is read-only because it is shared.
    with np.load(path, allow_pickle=False) as archive:
        images = archive[category]
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 784 or len(images) == 0:
        raise DataError(
            f"{path}: key {category!r} has shape {images.shape} and dtype {images.dtype}, "
            "expected (N, 784) uint8 with N >= 1"
        )
    images.flags.writeable = False
    return images


def read_sample(category: str) -> np.ndarray:
    """Return the bundled bitmaps of one category as a read-only (N, 784) uint8 array.

    ``category`` must be spelled as in :func:`available_sample_categories`.
    """
    index = _sample_index()
    if category not in index:
        raise DataError(
            f"category {category!r} is not in the bundled sample; "
            f"available: {', '.join(index)}"
        )
    return _read_sample_array(index[category], category)


def sample_counts() -> dict[str, int]:
    """Return the number of bundled images per category, read from the array headers only."""
    counts = {}
    for category, path in _sample_index().items():
        with zipfile.ZipFile(path) as archive, archive.open(f"{category}.npy") as member:
            shape, _ = read_npy_header(member)
        counts[category] = shape[0]
    return counts
