"""Readers for Google's Quick, Draw! file formats, each validating shape, dtype and content.

- numpy_bitmap ``.npy``: (N, 784) uint8 rows of 28x28 images; (N, 1, 784) and (N, 28, 28) copies
  are accepted too.
- simplified ``.ndjson``: one JSON object per line whose "drawing" is a list of strokes
  ``[[x0, x1, ...], [y0, y1, ...]]`` in a 256x256 box.
- sketch-rnn ``.npz``: keys "train", "valid" and "test", each an object array of (n, 3) integer
  arrays of stroke-3 rows (dx, dy, pen_lift), where pen_lift = 1 ends a stroke (Ha and Eck, "A
  Neural Representation of Sketch Drawings", 2017).

The last two are rasterized with :func:`smoe.data.raster.rasterize`. Every problem is raised as one
DataError naming the file and the line (ndjson) or the key and drawing index (npz).
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from smoe.data.errors import DataError
from smoe.data.raster import BOX, rasterize_many

BITMAP_PIXELS = 784
SKETCHRNN_SPLITS = ("train", "valid", "test")


# numpy_bitmap

def read_npy_header(file) -> tuple[tuple[int, ...], np.dtype]:
    """Read the header of a ``.npy`` stream and return (shape, dtype); the stream is left at the data.

    Raises ValueError or EOFError for a malformed header.
    """
    version = np.lib.format.read_magic(file)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(file)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(file)
    return shape, dtype


def inspect_numpy_bitmap(path: str | Path) -> int:
    """Check a numpy_bitmap file's header and size without reading its pixels; return N.

    Raises DataError for a missing, empty, truncated or malformed file, a dtype other than uint8,
    or a shape other than (N, 784), (N, 1, 784) or (N, 28, 28) with N >= 1.
    """
    path = Path(path)
    size = _file_size(path)
    try:
        with open(path, "rb") as file:
            shape, dtype = read_npy_header(file)
            data_offset = file.tell()
    except (ValueError, EOFError, OSError, SyntaxError) as error:
        raise DataError(f"{path}: not a valid .npy file ({error})") from error

    if dtype != np.uint8:
        raise DataError(f"{path}: dtype is {dtype}, expected uint8 (numpy_bitmap)")
    if shape not in _bitmap_shapes(shape):
        raise DataError(
            f"{path}: shape is {shape}, expected (N, 784), (N, 1, 784) or (N, 28, 28) (numpy_bitmap)"
        )
    if shape[0] == 0:
        raise DataError(f"{path}: contains no images (shape {shape})")

    expected = data_offset + shape[0] * BITMAP_PIXELS
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        raise DataError(f"{path}: file is {state}: {size} bytes, expected {expected} for shape {shape}")
    return shape[0]


def read_numpy_bitmap(path: str | Path, max_rows: int | None = None) -> np.ndarray:
    """Read a numpy_bitmap file as an (N, 28, 28) uint8 array, at most ``max_rows`` rows.

    The file is memory-mapped, so a cap reads only the first ``max_rows`` rows from disk.
    """
    path = Path(path)
    count = inspect_numpy_bitmap(path)
    rows = count if max_rows is None else min(count, max_rows)
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        images = np.array(mapped[:rows], dtype=np.uint8, order="C")
    except (ValueError, OSError) as error:
        raise DataError(f"{path}: cannot read the images ({error})") from error
    finally:
        mapped = None  # closes the memory map

    # Every Google category has drawings with ink; an all-zero file is a failed copy or download.
    if images.max() == 0:
        raise DataError(f"{path}: all {rows} images read are blank (no ink)")
    return images.reshape(rows, 28, 28)


def _bitmap_shapes(shape: tuple) -> tuple:
    n = shape[0] if shape else 0
    return ((n, BITMAP_PIXELS), (n, 1, BITMAP_PIXELS), (n, 28, 28))


def _file_size(path: Path) -> int:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error})") from error
    if size == 0:
        raise DataError(f"{path}: file is empty")
    return size


# simplified ndjson

def iter_simplified(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each drawing of a simplified ndjson file, validated.

    ``record["drawing"]`` is replaced by a list of float arrays of shape (2, n), one per stroke.
    Blank lines are skipped. A file with no drawing raises DataError.
    """
    path = Path(path)
    _file_size(path)
    found = False
    with open(path, "rb") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            yield line_number, _parse_simplified_line(path, line_number, line)
            found = True
    if not found:
        raise DataError(f"{path}: contains no drawings")


def read_simplified_strokes(path: str | Path, max_drawings: int | None = None) -> list[list[np.ndarray]]:
    """Read the strokes of a simplified ndjson file, each drawing a list of (2, n) arrays."""
    drawings = []
    for _, record in iter_simplified(path):
        if max_drawings is not None and len(drawings) >= max_drawings:
            break
        drawings.append(record["drawing"])
    return drawings


def read_simplified(path: str | Path, max_drawings: int | None = None) -> np.ndarray:
    """Read a simplified ndjson file and rasterize it to an (N, 28, 28) uint8 array."""
    return rasterize_many(read_simplified_strokes(path, max_drawings))


def _parse_simplified_line(path: Path, line_number: int, line: bytes) -> dict:
    where = f"{path}, line {line_number}"
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{where}: invalid JSON ({error}); the file may be truncated") from None
    if not isinstance(record, dict) or "drawing" not in record:
        raise DataError(f"{where}: expected a JSON object with a 'drawing' field")

    drawing = record["drawing"]
    if not isinstance(drawing, list) or not drawing:
        raise DataError(f"{where}: 'drawing' must be a non-empty list of strokes, got {_short(drawing)}")

    strokes = []
    for index, stroke in enumerate(drawing):
        if not (isinstance(stroke, list) and len(stroke) == 2 and all(isinstance(c, list) for c in stroke)):
            raise DataError(f"{where}: stroke {index} must be [[x0, x1, ...], [y0, y1, ...]], got {_short(stroke)}")
        xs, ys = stroke
        if len(xs) != len(ys) or not xs:
            raise DataError(f"{where}: stroke {index} has {len(xs)} x and {len(ys)} y values, expected equal and >= 1")
        bad = next((v for v in xs + ys if not _is_number(v)), None)
        if bad is not None:
            raise DataError(f"{where}: stroke {index} has a coordinate that is not a number: {_short(bad)}")
        points = np.array([xs, ys], dtype=np.float64)
        if points.min() < 0 or points.max() > BOX - 1:
            raise DataError(
                f"{where}: stroke {index} has coordinates in [{points.min():g}, {points.max():g}], "
                "expected [0, 255] (simplified format)"
            )
        strokes.append(points)

    record["drawing"] = strokes
    return record


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# sketch-rnn npz

def read_sketchrnn_stroke3(
    path: str | Path, splits: Sequence[str] = SKETCHRNN_SPLITS
) -> dict[str, list[np.ndarray]]:
    """Read the stroke-3 drawings of a sketch-rnn ``.npz`` file, by split.

    Each drawing is an (n, 3) int64 array of (dx, dy, pen_lift) rows. The object arrays are
    unpickled with a restricted unpickler that builds only numpy arrays and dtypes, so a crafted
    file cannot run code, and every element is checked.
    """
    path = Path(path)
    _file_size(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(f"{path}: not a valid .npz file ({error}); the file may be truncated") from error

    with archive:
        members = {name.removesuffix(".npy"): name for name in archive.namelist()}
        result = {}
        for split in splits:
            if split not in members:
                raise DataError(
                    f"{path}: key {split!r} is missing; found {', '.join(members) or 'no keys'} "
                    f"(sketch-rnn files have {', '.join(SKETCHRNN_SPLITS)})"
                )
            try:
                raw = archive.read(members[split])
            except (zipfile.BadZipFile, OSError, EOFError) as error:
                raise DataError(f"{path}: key {split!r} is unreadable ({error}); the file may be truncated") from error
            array = _load_npy_member(path, split, raw)
            result[split] = [_check_stroke3(path, split, index, item) for index, item in enumerate(array)]
            if not result[split]:
                raise DataError(f"{path}: key {split!r} contains no drawings")
    return result


def read_sketchrnn(
    path: str | Path, splits: Sequence[str] = SKETCHRNN_SPLITS, max_drawings: int | None = None
) -> np.ndarray:
    """Read a sketch-rnn ``.npz`` file and rasterize it to an (N, 28, 28) uint8 array.

    Drawings come in the order of ``splits``, then file order; ``max_drawings`` caps the total.
    """
    by_split = read_sketchrnn_stroke3(path, splits)
    drawings = [drawing for split in splits for drawing in by_split[split]][:max_drawings]
    return rasterize_many(stroke3_to_strokes(drawing) for drawing in drawings)


def stroke3_to_strokes(stroke3: np.ndarray) -> list[np.ndarray]:
    """Convert stroke-3 rows to absolute strokes in the 256 box of the simplified format.

    Offsets are summed from (0, 0), strokes are split after each row with pen_lift = 1, and the
    drawing is aligned to the top-left corner and scaled so that its larger side spans 0 to 255,
    the normalization of Google's simplified files.
    """
    positions = np.cumsum(stroke3[:, :2], axis=0, dtype=np.float64).T  # (2, n)
    positions -= positions.min(axis=1, keepdims=True)
    extent = positions.max()
    if extent > 0:
        positions *= (BOX - 1) / extent

    ends = np.flatnonzero(stroke3[:, 2] == 1) + 1
    strokes = np.split(positions, ends, axis=1)
    return [stroke for stroke in strokes if stroke.shape[1] > 0]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals numpy needs to rebuild arrays and dtypes."""

    # NOTE: tested on files written by numpy 2 with pickle protocols 2 and 4, not on a file from
    # Google's bucket. A Python 2 file that names another global would be rejected, not misread.

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes written by Python 2 pickles
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def _load_npy_member(path: Path, key: str, raw: bytes) -> np.ndarray:
    file = io.BytesIO(raw)
    try:
        shape, dtype = read_npy_header(file)
    except (ValueError, EOFError, SyntaxError) as error:
        raise DataError(f"{path}: key {key!r} is not a valid .npy array ({error})") from error

    if dtype != object:
        raise DataError(
            f"{path}: key {key!r} has dtype {dtype} and shape {shape}, expected an object array of "
            "(n, 3) stroke-3 arrays"
        )
    try:
        # Google's README loads these files with encoding="latin1" because they were pickled by
        # Python 2, whose byte strings latin1 restores unchanged.
        array = _NumpyOnlyUnpickler(file, encoding="latin1").load()
    except Exception as error:  # a corrupt pickle can fail in many ways; all mean a bad file
        raise DataError(f"{path}: key {key!r} cannot be unpickled safely ({error})") from error
    if not isinstance(array, np.ndarray) or array.shape != shape:
        raise DataError(f"{path}: key {key!r} does not contain an array of shape {shape}")
    return array.reshape(-1)


def _check_stroke3(path: Path, key: str, index: int, item) -> np.ndarray:
    where = f"{path}: key {key!r}, drawing {index}"
    if not isinstance(item, np.ndarray):
        raise DataError(f"{where}: expected an (n, 3) integer array, got {type(item).__name__}")
    if item.ndim != 2 or item.shape[1] != 3 or item.shape[0] == 0:
        raise DataError(f"{where}: shape is {item.shape}, expected (n, 3) with n >= 1")
    if not np.issubdtype(item.dtype, np.integer):
        raise DataError(f"{where}: dtype is {item.dtype}, expected integers (int16 in Google's files)")
    pen = item[:, 2]
    if not np.isin(pen, (0, 1)).all():
        raise DataError(f"{where}: pen_lift column has values {np.unique(pen)[:5].tolist()}, expected 0 or 1")
    return item.astype(np.int64)
