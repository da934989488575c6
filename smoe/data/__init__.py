"""Real Quick, Draw! data for SMoE-VAE studies: readers, rasterizer, downloader, bundled sample.

Drawings are from the Quick, Draw! dataset by Google (https://quickdraw.withgoogle.com/data),
released under CC BY 4.0. Typical use::

    from smoe.data import load_quickdraw
    data = load_quickdraw(per_category=70_000)        # full data if cached, else the bundled sample
    images, labels = data.train_subset(0.2, seed=0)   # stratified, nested subsets
"""

from smoe.data.categories import GOOGLE_CATEGORIES, PAPER_CATEGORIES, canonical_category
from smoe.data.dataset import QuickDrawData, load_quickdraw
from smoe.data.download import DEFAULT_BASE_URL, default_cache_dir, download
from smoe.data.errors import DataError
from smoe.data.raster import rasterize, rasterize_many
from smoe.data.readers import (
    read_numpy_bitmap,
    read_simplified,
    read_simplified_strokes,
    read_sketchrnn,
    read_sketchrnn_stroke3,
    stroke3_to_strokes,
)
from smoe.data.sample import available_sample_categories

__all__ = [
    "DEFAULT_BASE_URL",
    "GOOGLE_CATEGORIES",
    "PAPER_CATEGORIES",
    "DataError",
    "QuickDrawData",
    "available_sample_categories",
    "canonical_category",
    "default_cache_dir",
    "download",
    "load_quickdraw",
    "rasterize",
    "rasterize_many",
    "read_numpy_bitmap",
    "read_simplified",
    "read_simplified_strokes",
    "read_sketchrnn",
    "read_sketchrnn_stroke3",
    "stroke3_to_strokes",
]
