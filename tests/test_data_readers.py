"""Readers of numpy_bitmap, simplified ndjson and sketch-rnn npz files, on good and corrupt files."""

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from smoe.data import (
    DataError,
    read_numpy_bitmap,
    read_simplified,
    read_simplified_strokes,
    read_sketchrnn,
    read_sketchrnn_stroke3,
    stroke3_to_strokes,
)
from smoe.data.sample import read_sample

DATA = Path(__file__).parent / "data"
EYES = DATA / "simplified_eye.ndjson"


@pytest.fixture
def bitmaps():
    return np.array(read_sample("eye")[:10])


# numpy_bitmap

def test_bitmap_reads_rows(tmp_path, bitmaps):
    path = tmp_path / "eye.npy"
    np.save(path, bitmaps)

    images = read_numpy_bitmap(path)

    assert images.shape == (10, 28, 28)
    assert np.array_equal(images.reshape(10, 784), bitmaps)


def test_bitmap_accepts_n_1_784(tmp_path, bitmaps):
    path = tmp_path / "eye.npy"
    np.save(path, bitmaps.reshape(10, 1, 784))

    assert read_numpy_bitmap(path).shape == (10, 28, 28)


def test_bitmap_max_rows(tmp_path, bitmaps):
    path = tmp_path / "eye.npy"
    np.save(path, bitmaps)

    images = read_numpy_bitmap(path, max_rows=3)

    assert np.array_equal(images.reshape(3, 784), bitmaps[:3])


def test_bitmap_truncated(tmp_path, bitmaps):
    path = tmp_path / "eye.npy"
    np.save(path, bitmaps)
    path.write_bytes(path.read_bytes()[:-100])

    with pytest.raises(DataError, match=r"eye\.npy: file is truncated"):
        read_numpy_bitmap(path)


def test_bitmap_empty_file(tmp_path):
    path = tmp_path / "eye.npy"
    path.write_bytes(b"")

    with pytest.raises(DataError, match=r"eye\.npy: file is empty"):
        read_numpy_bitmap(path)


def test_bitmap_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_numpy_bitmap(tmp_path / "absent.npy")


def test_bitmap_not_npy(tmp_path):
    path = tmp_path / "eye.npy"
    path.write_text("not a numpy file\n")

    with pytest.raises(DataError, match="not a valid .npy file"):
        read_numpy_bitmap(path)


def test_bitmap_wrong_dtype(tmp_path, bitmaps):
    path = tmp_path / "eye.npy"
    np.save(path, bitmaps.astype(np.float32))

    with pytest.raises(DataError, match="dtype is float32, expected uint8"):
        read_numpy_bitmap(path)


def test_bitmap_wrong_shape(tmp_path, bitmaps):
    path = tmp_path / "eye.npy"
    np.save(path, bitmaps[:, :700])

    with pytest.raises(DataError, match=r"shape is \(10, 700\)"):
        read_numpy_bitmap(path)


def test_bitmap_no_rows(tmp_path):
    path = tmp_path / "eye.npy"
    np.save(path, np.zeros((0, 784), dtype=np.uint8))

    with pytest.raises(DataError, match="contains no images"):
        read_numpy_bitmap(path)


def test_bitmap_object_array(tmp_path):
    path = tmp_path / "eye.npy"
    np.save(path, np.array([None, 1], dtype=object), allow_pickle=True)

    with pytest.raises(DataError, match="dtype is object"):
        read_numpy_bitmap(path)


# simplified ndjson

def test_simplified_reads_drawings():
    images = read_simplified(EYES)

    assert images.shape == (25, 28, 28)
    assert images.dtype == np.uint8


def test_simplified_max_drawings():
    assert len(read_simplified_strokes(EYES, max_drawings=4)) == 4


def test_simplified_skips_blank_lines(tmp_path):
    path = tmp_path / "eye.ndjson"
    lines = EYES.read_text().splitlines()[:2]
    path.write_text(lines[0] + "\n\n" + lines[1] + "\n\n")

    assert len(read_simplified_strokes(path)) == 2


def test_simplified_empty_file(tmp_path):
    path = tmp_path / "eye.ndjson"
    path.write_text("")

    with pytest.raises(DataError, match=r"eye\.ndjson: file is empty"):
        read_simplified(path)


def test_simplified_blank_file(tmp_path):
    path = tmp_path / "eye.ndjson"
    path.write_text("\n\n")

    with pytest.raises(DataError, match="contains no drawings"):
        read_simplified(path)


def test_simplified_malformed_line(tmp_path):
    path = tmp_path / "eye.ndjson"
    lines = EYES.read_text().splitlines()[:3]
    lines[1] = "{not json"
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(DataError, match=r"eye\.ndjson, line 2: invalid JSON"):
        read_simplified(path)


def test_simplified_truncated(tmp_path):
    path = tmp_path / "eye.ndjson"
    text = "\n".join(EYES.read_text().splitlines()[:4])
    path.write_text(text[: len(text) - 50])

    with pytest.raises(DataError, match="line 4: invalid JSON .* truncated"):
        read_simplified(path)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([1, 2], "expected a JSON object with a 'drawing' field"),
        ({"word": "eye"}, "expected a JSON object with a 'drawing' field"),
        ({"drawing": []}, "'drawing' must be a non-empty list"),
        ({"drawing": [[[1, 2]]]}, r"stroke 0 must be \[\[x0"),
        ({"drawing": [[[1, 2], [3]]]}, "stroke 0 has 2 x and 1 y values"),
        ({"drawing": [[[1, "a"], [3, 4]]]}, "stroke 0 has a coordinate that is not a number: 'a'"),
        ({"drawing": [[[0, 10], [0, 10]], [[0, 300], [0, 10]]]}, r"stroke 1 has coordinates in \[0, 300\]"),
        ({"drawing": [[[0, -1], [0, 10]]]}, r"stroke 0 has coordinates in \[-1, 10\], expected \[0, 255\]"),
    ],
)
def test_simplified_invalid_record(tmp_path, record, message):
    path = tmp_path / "eye.ndjson"
    good = EYES.read_text().splitlines()[0]
    path.write_text(good + "\n" + json.dumps(record) + "\n")

    with pytest.raises(DataError, match="line 2: " + message):
        read_simplified(path)


# sketch-rnn npz

def to_stroke3(strokes):
    """Convert absolute (2, n) strokes to stroke-3 rows, as sketch-rnn's files store them."""
    points = np.hstack(strokes).T
    pen = np.concatenate([np.eye(1, stroke.shape[1], stroke.shape[1] - 1)[0] for stroke in strokes])
    offsets = np.diff(points, axis=0, prepend=[[0, 0]])
    return np.column_stack([offsets, pen]).astype(np.int16)


def object_array(items):
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


@pytest.fixture
def eye_stroke3():
    return [to_stroke3(strokes) for strokes in read_simplified_strokes(EYES)]


@pytest.fixture
def sketchrnn_file(tmp_path, eye_stroke3):
    path = tmp_path / "eye.npz"
    np.savez_compressed(
        path,
        train=object_array(eye_stroke3[:20]),
        valid=object_array(eye_stroke3[20:23]),
        test=object_array(eye_stroke3[23:]),
    )
    return path


def write_npz_member(path, key, write):
    """Write a one-member npz whose .npy bytes come from write(file)."""
    buffer = io.BytesIO()
    write(buffer)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{key}.npy", buffer.getvalue())


def test_sketchrnn_reads_splits(sketchrnn_file):
    drawings = read_sketchrnn_stroke3(sketchrnn_file)

    assert [len(drawings[key]) for key in ("train", "valid", "test")] == [20, 3, 2]


def test_sketchrnn_roundtrip_strokes(eye_stroke3):
    strokes = stroke3_to_strokes(eye_stroke3[0])
    original = read_simplified_strokes(EYES, max_drawings=1)[0]

    assert len(strokes) == len(original)
    assert np.hstack(strokes).max() == pytest.approx(255)


def test_sketchrnn_matches_google_bitmaps(sketchrnn_file):
    images = read_sketchrnn(sketchrnn_file).reshape(25, -1).astype(np.float64)
    google = read_sample("eye")[:25].astype(np.float64)

    scores = [np.corrcoef(a, b)[0, 1] for a, b in zip(images, google)]

    assert np.mean(scores) >= 0.98


def test_sketchrnn_max_drawings(sketchrnn_file):
    assert read_sketchrnn(sketchrnn_file, splits=("test",), max_drawings=1).shape == (1, 28, 28)


def test_sketchrnn_python2_pickle(tmp_path, eye_stroke3):
    # Google's files were pickled by Python 2; protocol 2 is the closest Python 3 can write.
    path = tmp_path / "eye.npz"
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|O", "fortran_order": False, "shape": (3,)})
    pickle.dump(object_array(eye_stroke3[:3]), buffer, protocol=2)
    with zipfile.ZipFile(path, "w") as archive:
        for key in ("train", "valid", "test"):
            archive.writestr(f"{key}.npy", buffer.getvalue())

    drawings = read_sketchrnn_stroke3(path)["valid"]

    assert np.array_equal(drawings[2], eye_stroke3[2])


def test_sketchrnn_missing_key(tmp_path, eye_stroke3):
    path = tmp_path / "eye.npz"
    np.savez(path, train=object_array(eye_stroke3[:2]), test=object_array(eye_stroke3[:2]))

    with pytest.raises(DataError, match="key 'valid' is missing"):
        read_sketchrnn(path)


def test_sketchrnn_not_zip(tmp_path):
    path = tmp_path / "eye.npz"
    path.write_text("garbage")

    with pytest.raises(DataError, match=r"eye\.npz: not a valid .npz file"):
        read_sketchrnn(path)


def test_sketchrnn_truncated(sketchrnn_file):
    sketchrnn_file.write_bytes(sketchrnn_file.read_bytes()[:-200])

    with pytest.raises(DataError, match="truncated"):
        read_sketchrnn(sketchrnn_file)


def test_sketchrnn_empty_file(tmp_path):
    path = tmp_path / "eye.npz"
    path.write_bytes(b"")

    with pytest.raises(DataError, match="file is empty"):
        read_sketchrnn(path)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (np.zeros((4, 2), dtype=np.int16), r"drawing 1: shape is \(4, 2\)"),
        (np.zeros((0, 3), dtype=np.int16), r"drawing 1: shape is \(0, 3\)"),
        (np.zeros((4, 3), dtype=np.float32), "drawing 1: dtype is float32"),
        (np.array([[1, 1, 2]], dtype=np.int16), "drawing 1: pen_lift column has values"),
        ("not an array", "drawing 1: expected an \\(n, 3\\) integer array, got str"),
    ],
)
def test_sketchrnn_bad_drawing(tmp_path, eye_stroke3, item, message):
    path = tmp_path / "eye.npz"
    np.savez(path, train=object_array([eye_stroke3[0], item]), valid=object_array(eye_stroke3[:1]),
             test=object_array(eye_stroke3[:1]))

    with pytest.raises(DataError, match="key 'train', " + message):
        read_sketchrnn(path)


def test_sketchrnn_numeric_array(tmp_path):
    path = tmp_path / "eye.npz"
    np.savez(path, train=np.zeros((2, 5, 3), dtype=np.int16))

    with pytest.raises(DataError, match="key 'train' has dtype int16"):
        read_sketchrnn(path, splits=("train",))


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_sketchrnn_rejects_code_in_pickle(tmp_path):
    path = tmp_path / "eye.npz"
    marker = tmp_path / "executed"

    def write(file):
        header = {"descr": "|O", "fortran_order": False, "shape": (1,)}
        np.lib.format.write_array_header_1_0(file, header)
        pickle.dump(Exploit(marker), file, protocol=2)

    write_npz_member(path, "train", write)

    with pytest.raises(DataError, match="cannot be unpickled safely"):
        read_sketchrnn(path, splits=("train",))
    assert not marker.exists()


def test_bitmap_all_blank(tmp_path):
    path = tmp_path / "eye.npy"
    np.save(path, np.zeros((5, 784), dtype=np.uint8))

    with pytest.raises(DataError, match="all 5 images read are blank"):
        read_numpy_bitmap(path)
