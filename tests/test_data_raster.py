"""Rasterizer against Google's own numpy_bitmap rendering of the same drawings."""

import json
from pathlib import Path

import numpy as np
import pytest

from smoe.data import rasterize, rasterize_many, read_simplified
from smoe.data.sample import read_sample

DATA = Path(__file__).parent / "data"
CATEGORIES = ("eye", "cat", "snowflake")


def correlations(images, reference):
    images = images.reshape(len(images), -1).astype(np.float64)
    reference = reference.reshape(len(reference), -1).astype(np.float64)
    return np.array([np.corrcoef(a, b)[0, 1] for a, b in zip(images, reference)])


@pytest.mark.parametrize("category", CATEGORIES)
def test_raster_matches_google_bitmaps(category):
    images = read_simplified(DATA / f"simplified_{category}.ndjson")
    # Rows 0-24 of the bundled sample are Google's bitmaps of these 25 drawings.
    google = read_sample(category)[:25]

    scores = correlations(images, google)

    assert scores.mean() >= 0.99
    assert scores.min() >= 0.98


def test_raster_single_drawing_correlates():
    line = (DATA / "simplified_eye.ndjson").read_text().splitlines()[0]
    image = rasterize(json.loads(line)["drawing"])

    score = correlations(image[None], read_sample("eye")[:1])[0]

    assert score >= 0.99


def test_raster_output_format():
    image = rasterize([([0, 255], [0, 255])])

    assert image.shape == (28, 28)
    assert image.dtype == np.uint8
    assert image.max() == 255


def test_raster_full_box_leaves_frame_empty():
    # A square on the edges of the 256 box is the widest possible drawing. The padding keeps the
    # outermost pixel ring blank, as in every Google bitmap.
    square = [([0, 255, 255, 0, 0], [0, 0, 255, 255, 0])]
    image = rasterize(square)

    frame = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])

    assert frame.max() == 0
    assert image[1].max() > 0


def test_raster_dot_is_centred():
    image = rasterize([([40], [200])]).astype(np.float64)

    rows, columns = np.indices(image.shape)
    centre = (float((rows * image).sum() / image.sum()), float((columns * image).sum() / image.sum()))

    assert image.sum() > 0
    assert centre == pytest.approx((13.5, 13.5), abs=0.01)


def test_raster_empty_drawing_is_blank():
    assert rasterize([]).max() == 0


def test_raster_many_empty_list():
    assert rasterize_many([]).shape == (0, 28, 28)
