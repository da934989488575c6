"""Dataset assembly: QuickDraw bitmaps of chosen categories, split into fixed train and test sets.

Images stay one uint8 tensor (N, 28, 28) so that a trainer takes batches as index slices. The test
split of each category is drawn with ``split_seed`` alone, so it does not change with
``data_fraction``, and test errors are comparable across data fractions. ``train_subset`` takes a
prefix of one fixed permutation per category, so for the same seed the 5 % subset lies inside the
10 % subset.
"""

from __future__ import annotations

import logging
import math
import numbers
import shlex
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from smoe.data.categories import GOOGLE_CATEGORIES, PAPER_CATEGORIES, canonical_category
from smoe.data.download import bitmap_path, download, resolve_cache_dir
from smoe.data.errors import DataError
from smoe.data.readers import read_numpy_bitmap
from smoe.data.sample import available_sample_categories, read_sample

logger = logging.getLogger(__name__)

SOURCES = ("auto", "sample", "full")

# Separate random streams for the test split and for the training subsets, so that neither
# depends on the other even when split_seed == seed.
_SPLIT_STREAM = 0
_SUBSET_STREAM = 1


@dataclass(frozen=True)
class QuickDrawData:
    """QuickDraw bitmaps split into train and test sets, categories stored as label indices.

    Within each split the images are grouped by category, in the order of ``categories``, and keep
    the order of the source file within a category.
    """

    categories: tuple[str, ...]
    train_images: torch.Tensor  # (N_train, 28, 28) uint8, 0 background, 255 ink
    train_labels: torch.Tensor  # (N_train,) int64, index into categories
    test_images: torch.Tensor  # (N_test, 28, 28) uint8
    test_labels: torch.Tensor  # (N_test,) int64
    source: str  # "full" or "sample"

    def train_subset(self, data_fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Return a stratified random subset of the training split as (images, labels).

        Each category keeps ``round(data_fraction * n_c)`` of its ``n_c`` training images, at least
        one. The subset is the prefix of a permutation fixed by ``seed`` and the category name, so
        subsets of one seed are nested: a smaller fraction gives a subset of a larger one.
        ``data_fraction == 1.0`` returns the whole training split.
        """
        _check_fraction("data_fraction", data_fraction, include_one=True)
        _check_seed("seed", seed)
        if data_fraction == 1.0:
            return self.train_images, self.train_labels

        labels = self.train_labels.numpy()
        chosen = []
        for label, category in enumerate(self.categories):
            rows = np.flatnonzero(labels == label)
            keep = min(len(rows), max(1, math.floor(data_fraction * len(rows) + 0.5)))
            order = _category_rng(seed, category, _SUBSET_STREAM).permutation(len(rows))
            chosen.append(rows[order[:keep]])

        index = torch.from_numpy(np.sort(np.concatenate(chosen)))
        return self.train_images[index], self.train_labels[index]

    def counts(self) -> dict[str, dict[str, int]]:
        """Return the number of train and test images per category."""
        train = torch.bincount(self.train_labels, minlength=len(self.categories)).tolist()
        test = torch.bincount(self.test_labels, minlength=len(self.categories)).tolist()
        return {
            category: {"train": train[i], "test": test[i]}
            for i, category in enumerate(self.categories)
        }


def load_quickdraw(
    categories: Sequence[str] = PAPER_CATEGORIES,
    per_category: int | None = None,
    *,
    source: str = "auto",
    test_fraction: float = 0.1,
    split_seed: int = 0,
    cache_dir: str | Path | None = None,
    base_url: str | None = None,
    offline: bool | None = None,
) -> QuickDrawData:
    """Load QuickDraw bitmaps of ``categories`` and split each category into train and test images.

    Parameters
    ----------
    categories : sequence of str
        Category names in Google's spelling; underscores are accepted for spaces.
    per_category : int, optional
        Keep at most this many images per category, the first ones of each file. The SMoE-VAE
        paper (Nikolic, Oguz and Psaltis, arXiv 2509.10025) used 70,000. The cap is applied
        before the split.
    source : {"auto", "sample", "full"}
        "sample" uses the bundled sample and never the network. "auto" uses Google's numpy_bitmap
        files from the cache dir when all categories are there, else the bundled sample with a
        warning, and never touches the network. "full" uses the cache dir and downloads missing
        files (an error when offline).
    test_fraction : float
        Share of each category held out for testing, in (0, 1). Every category keeps at least one
        test and one train image.
    split_seed : int
        Seed of the test split.
    cache_dir, base_url, offline
        Passed to :func:`smoe.data.download`.

    Raises
    ------
    DataError
        For an invalid argument, an unknown category, a category with fewer than two images, or a
        missing or corrupt data file.
    """
    names = _check_categories(categories, source)
    if per_category is not None:
        _check_positive_int("per_category", per_category)
    _check_fraction("test_fraction", test_fraction, include_one=False)
    _check_seed("split_seed", split_seed)

    if source == "sample":
        arrays = {name: read_sample(name)[:per_category] for name in names}
        used = "sample"
    else:
        arrays, used = _read_cached_or_sample(names, per_category, source, cache_dir, base_url, offline)

    return _split(names, arrays, test_fraction, split_seed, used)


def _read_cached_or_sample(names, per_category, source, cache_dir, base_url, offline):
    cache = resolve_cache_dir(cache_dir)
    missing = [name for name in names if not bitmap_path(cache, name).is_file()]

    if source == "full" and missing:
        download(missing, "numpy_bitmap", cache_dir=cache, base_url=base_url, offline=offline)
        missing = []

    if not missing:
        arrays = {
            name: read_numpy_bitmap(bitmap_path(cache, name), max_rows=per_category).reshape(-1, 784)
            for name in names
        }
        return arrays, "full"

    in_sample = set(available_sample_categories())
    absent = [name for name in names if name not in in_sample]
    if absent:
        raise DataError(
            f"categories {', '.join(absent)} are neither in {bitmap_path(cache, absent[0]).parent} "
            f"nor in the bundled sample; download them with: python -m smoe.data download "
            f"{_command_line_names(absent)}"
        )

    arrays = {name: read_sample(name)[:per_category] for name in names}
    counts = ", ".join(f"{name} {len(images)}" for name, images in arrays.items())
    logger.warning(
        "full QuickDraw data is absent (%s not in %s); using the bundled sample instead, images "
        "per category: %s. Fetch the full data with: python -m smoe.data download %s",
        ", ".join(f"{name}.npy" for name in missing),
        bitmap_path(cache, missing[0]).parent,
        counts,
        _command_line_names(missing),
    )
    return arrays, "sample"


def _command_line_names(names) -> str:
    return " ".join(shlex.quote(name) for name in names)


def _split(names, arrays, test_fraction, split_seed, source) -> QuickDrawData:
    train_parts, test_parts, train_labels, test_labels = [], [], [], []
    for label, name in enumerate(names):
        images = arrays[name]
        count = len(images)
        if count < 2:
            raise DataError(
                f"category {name!r} has {count} image(s), at least 2 are needed for a train and a "
                "test image"
            )

        test_count = min(count - 1, max(1, math.floor(test_fraction * count + 0.5)))
        order = _category_rng(split_seed, name, _SPLIT_STREAM).permutation(count)
        test_rows = np.sort(order[:test_count])
        train_rows = np.sort(order[test_count:])

        train_parts.append(images[train_rows])
        test_parts.append(images[test_rows])
        train_labels.append(np.full(len(train_rows), label, dtype=np.int64))
        test_labels.append(np.full(len(test_rows), label, dtype=np.int64))

    return QuickDrawData(
        categories=tuple(names),
        train_images=torch.from_numpy(np.concatenate(train_parts).reshape(-1, 28, 28)),
        train_labels=torch.from_numpy(np.concatenate(train_labels)),
        test_images=torch.from_numpy(np.concatenate(test_parts).reshape(-1, 28, 28)),
        test_labels=torch.from_numpy(np.concatenate(test_labels)),
        source=source,
    )


def _category_rng(seed: int, category: str, stream: int) -> np.random.Generator:
    # Keyed on the category name rather than its position, so adding or reordering categories
    # leaves the split of every other category unchanged.
    return np.random.default_rng([seed, zlib.crc32(category.encode()), stream])


def _check_categories(categories, source) -> list[str]:
    if source not in SOURCES:
        raise DataError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if isinstance(categories, str):
        categories = (categories,)
    try:
        categories = list(categories)
    except TypeError:
        raise DataError(f"categories must be a sequence of names, got {categories!r}") from None
    if not categories:
        raise DataError("categories is empty, expected at least one category name")

    available = available_sample_categories() if source == "sample" else GOOGLE_CATEGORIES
    names = [canonical_category(name, available) for name in categories]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(f"categories lists {', '.join(duplicates)} more than once")
    return names


def _check_positive_int(argument: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise DataError(f"{argument} must be an integer >= 1, got {value!r}")


def _check_seed(argument: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise DataError(f"{argument} must be an integer >= 0, got {value!r}")


def _check_fraction(argument: str, value, *, include_one: bool) -> None:
    interval = "(0, 1]" if include_one else "(0, 1)"
    valid = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and 0 < value
        and (value <= 1 if include_one else value < 1)
    )
    if not valid:
        raise DataError(f"{argument} must be a number in {interval}, got {value!r}")
