"""Rasterize QuickDraw strokes to 28x28 bitmaps the way Google rendered its numpy_bitmap files.

Google's numpy_bitmap files were drawn from the simplified strokes with cairo (snippet linked from
the "Numpy bitmaps" section of https://github.com/googlecreativelab/quickdraw-dataset):

- the drawing's bounding box is centred in the 256x256 box of the simplified format;
- strokes are 16 units wide with round caps and joins, and 16 units of padding surround the box, so
  the canvas is 256 + 2*16 + 16 = 304 units across, scaled to 28 px;
- cairo antialiases by pixel coverage; ink is 255 on a background of 0.

Here a stroke is a chain of capsules (segments thickened by a radius of 8 units), which is exactly a
round-capped, round-joined line. Coverage is estimated by testing 16x16 sample points per pixel and
averaging them. It was compared with Google's rows on 75 drawings that exist both as strokes and
as bitmaps, the first 25 simplified drawings of eye, cat and snowflake. The per-image correlation
is 0.999 on average and 0.993 at the minimum, and the mean absolute difference is 1.0/255.
``tests/test_data_raster.py`` checks the correlation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

SIDE = 28  # output pixels per side
BOX = 256.0  # side of the simplified drawing box, in drawing units
LINE_WIDTH = 16.0  # stroke width, in drawing units
PADDING = 16.0  # margin around the box, in drawing units
SUPERSAMPLING = 16  # sample points per pixel along each axis

_CANVAS = BOX + 2 * PADDING + LINE_WIDTH  # 304 units
_SCALE = SIDE / _CANVAS  # pixels per drawing unit

# Sample points of the supersampled grid, at the centres of the sub-pixels, in drawing units.
_GRID = SIDE * SUPERSAMPLING
_SAMPLES = (np.arange(_GRID) + 0.5) / (SUPERSAMPLING * _SCALE) - _CANVAS / 2 + BOX / 2

Strokes = Sequence[tuple[Sequence[float], Sequence[float]]]


def rasterize(strokes: Strokes) -> np.ndarray:
    """Render one drawing to a (28, 28) uint8 bitmap, 0 background and 255 ink.

    ``strokes`` is a list of ``(xs, ys)`` pairs in the 256-unit box of Google's simplified format.
    A stroke of one point is drawn as a dot. The caller validates the coordinates (the readers do).
    """
    points = [np.asarray(stroke, dtype=np.float64).reshape(2, -1) for stroke in strokes]
    if not points or all(p.shape[1] == 0 for p in points):
        return np.zeros((SIDE, SIDE), dtype=np.uint8)

    # Centre the bounding box in the 256 box (Google's simplified drawings start at 0, where this
    # reduces to Google's offset (256 - max) / 2).
    every = np.hstack(points)
    offset = (BOX - every.min(axis=1) - every.max(axis=1)) / 2
    ink = np.zeros((_GRID, _GRID), dtype=bool)  # (y, x) supersampled
    for stroke in points:
        if stroke.shape[1] == 0:
            continue
        stroke = stroke + offset[:, None]
        if stroke.shape[1] == 1:
            stroke = np.repeat(stroke, 2, axis=1)
        for start, end in zip(stroke.T[:-1], stroke.T[1:]):
            _draw_capsule(ink, start, end)

    # Average each 16x16 block of samples down to one pixel.
    blocks = ink.reshape(SIDE, SUPERSAMPLING, SIDE, SUPERSAMPLING)
    coverage = blocks.mean(axis=(1, 3))
    return np.rint(coverage * 255).astype(np.uint8)


def rasterize_many(drawings: Iterable[Strokes]) -> np.ndarray:
    """Render drawings to an (N, 28, 28) uint8 array."""
    images = [rasterize(strokes) for strokes in drawings]
    if not images:
        return np.zeros((0, SIDE, SIDE), dtype=np.uint8)
    return np.stack(images)


def _draw_capsule(ink: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
    """Set the samples within LINE_WIDTH / 2 of the segment start-end."""
    radius = LINE_WIDTH / 2
    low = np.minimum(start, end) - radius
    high = np.maximum(start, end) + radius

    # Only the samples inside the capsule's bounding box can be inked.
    columns = slice(*np.searchsorted(_SAMPLES, [low[0], high[0]]))
    rows = slice(*np.searchsorted(_SAMPLES, [low[1], high[1]]))
    xs = _SAMPLES[columns][None, :] - start[0]  # (1, W)
    ys = _SAMPLES[rows][:, None] - start[1]  # (H, 1)

    direction = end - start
    length_squared = float(direction @ direction)
    if length_squared == 0.0:
        distance_squared = xs**2 + ys**2
    else:
        # Project each sample onto the segment, clamped to its ends.
        t = np.clip((xs * direction[0] + ys * direction[1]) / length_squared, 0.0, 1.0)
        distance_squared = (xs - t * direction[0]) ** 2 + (ys - t * direction[1]) ** 2

    ink[rows, columns] |= distance_squared <= radius**2
