"""The study's view of smoe.data: which categories a source offers, and loading the data once."""

from __future__ import annotations

import logging

from smoe.data import DataError, QuickDrawData, available_sample_categories, load_quickdraw
from smoe.data.categories import GOOGLE_CATEGORIES, canonical_category

logger = logging.getLogger(__name__)


def available_categories(source: str, categories: list[str] | None = None) -> tuple[str, ...]:
    """Return the category names ``source`` can load, in Google's spelling.

    "full" offers all 345 QuickDraw categories (missing files are downloaded). "sample" offers the
    bundled sample. "auto" reads the full files only when every requested category is cached and
    falls back to the sample otherwise, so it offers the sample's categories unless all of
    ``categories`` are cached.
    """
    if source == "full":
        return GOOGLE_CATEGORIES
    sample = available_sample_categories()
    if source == "sample" or not categories:
        return sample

    from smoe.data import default_cache_dir
    from smoe.data.dataset import bitmap_path

    cache = default_cache_dir()
    names = []
    for name in categories:
        try:
            names.append(canonical_category(name))
        except DataError:
            return sample
    if all(bitmap_path(cache, name).is_file() for name in names):
        return GOOGLE_CATEGORIES
    return sample


def canonical_categories(source: str, categories: list[str]) -> list[str] | str:
    """Return Google's spelling of each name, or the first name ``source`` does not offer (a str)."""
    available = available_categories(source, categories)
    names = []
    for name in categories:
        try:
            names.append(canonical_category(name, available))
        except DataError:
            return name
    return names


def load_study_data(data_spec) -> QuickDrawData:
    """Load the study's drawings once on the driver; trials get them through Ray's object store."""
    data = load_quickdraw(
        tuple(data_spec.categories),
        data_spec.per_category,
        source=data_spec.source,
        test_fraction=data_spec.test_fraction,
        split_seed=data_spec.split_seed,
    )
    logger.info("loaded %s data: %d train and %d test drawings of %s", data.source,
                len(data.train_labels), len(data.test_labels), ", ".join(data.categories))
    return data
