"""Dataset assembly: split, nested stratified subsets, caps, argument checks, sample fallback."""

import logging

import numpy as np
import pytest
import torch

from smoe.data import PAPER_CATEGORIES, DataError, QuickDrawData, load_quickdraw
from smoe.data.sample import available_sample_categories, read_sample


def row_set(images):
    return {row.tobytes() for row in images.reshape(len(images), -1).numpy()}


@pytest.fixture(scope="module")
def data():
    return load_quickdraw(source="sample")


def test_sample_format(data):
    assert data.categories == PAPER_CATEGORIES
    assert data.source == "sample"
    assert data.train_images.dtype == torch.uint8
    assert data.train_images.shape[1:] == (28, 28)
    assert data.train_labels.dtype == torch.int64
    assert data.test_images.shape == (len(data.test_labels), 28, 28)


def test_sample_counts(data):
    counts = data.counts()

    assert counts["face"] == {"train": 225, "test": 25}
    assert counts["cat"] == {"train": 4464, "test": 496}
    assert sum(c["train"] + c["test"] for c in counts.values()) == 9710


def test_split_is_disjoint(data):
    assert row_set(data.train_images).isdisjoint(row_set(data.test_images))


def test_split_fixed_by_seed(data):
    again = load_quickdraw(source="sample")
    other = load_quickdraw(source="sample", split_seed=1)

    assert torch.equal(again.test_images, data.test_images)
    assert not torch.equal(other.test_images, data.test_images)


def test_split_independent_of_other_categories(data):
    alone = load_quickdraw(["eye"], source="sample")

    assert torch.equal(alone.test_images, data.test_images[data.test_labels == 1])


def test_labels_match_categories(data):
    eye_rows = row_set(torch.from_numpy(np.array(read_sample("eye"))))

    assert row_set(data.train_images[data.train_labels == 1]) <= eye_rows


def test_subset_nested(data):
    small = row_set(data.train_subset(0.05, seed=3)[0])
    medium = row_set(data.train_subset(0.1, seed=3)[0])
    large = row_set(data.train_subset(0.5, seed=3)[0])

    assert small < medium
    assert medium < large


def test_subset_stratified(data):
    images, labels = data.train_subset(0.2, seed=0)
    train_counts = torch.bincount(data.train_labels)

    expected = torch.clamp(torch.floor(train_counts * 0.2 + 0.5), min=1).long()

    assert torch.equal(torch.bincount(labels, minlength=5), expected)
    assert len(images) == len(labels)


def test_subset_keeps_one_per_category(data):
    _, labels = data.train_subset(0.0001, seed=0)

    assert torch.equal(torch.bincount(labels, minlength=5), torch.ones(5, dtype=torch.int64))


def test_subset_seeded(data):
    first = data.train_subset(0.1, seed=0)[0]
    again = data.train_subset(0.1, seed=0)[0]
    other = data.train_subset(0.1, seed=1)[0]

    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_subset_within_train_split(data):
    assert row_set(data.train_subset(0.3, seed=2)[0]) <= row_set(data.train_images)


def test_subset_full_fraction(data):
    images, labels = data.train_subset(1.0)

    assert images is data.train_images
    assert labels is data.train_labels


@pytest.mark.parametrize("fraction", [0, 1.5, -0.1, float("nan"), True, "0.5"])
def test_subset_bad_fraction(data, fraction):
    with pytest.raises(DataError, match=r"data_fraction must be a number in \(0, 1\], got"):
        data.train_subset(fraction)


def test_per_category_cap():
    data = load_quickdraw(["eye", "cat"], per_category=100, source="sample")

    assert data.counts() == {"eye": {"train": 90, "test": 10}, "cat": {"train": 90, "test": 10}}
    assert row_set(data.test_images[data.test_labels == 0]) <= row_set(torch.from_numpy(np.array(read_sample("eye")[:100])))


def test_per_category_two_images():
    data = load_quickdraw(per_category=2, source="sample")

    assert all(c == {"train": 1, "test": 1} for c in data.counts().values())


def test_per_category_one_image():
    with pytest.raises(DataError, match="category 'face' has 1 image"):
        load_quickdraw(per_category=1, source="sample")


def test_category_alias():
    assert load_quickdraw(["alarm_clock"], per_category=10, source="sample").categories == ("alarm clock",)


def test_unknown_category():
    with pytest.raises(DataError, match="unknown category 'unicorn'; available: face, eye, cat"):
        load_quickdraw(["unicorn"], source="sample")


def test_unknown_category_auto():
    with pytest.raises(DataError, match="unknown category 'catt'; did you mean: cat"):
        load_quickdraw(["catt"])


def test_category_not_cached_nor_bundled():
    with pytest.raises(DataError, match="zebra are neither in .* nor in the bundled sample"):
        load_quickdraw(["zebra", "cat"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_category": 0}, "per_category must be an integer >= 1, got 0"),
        ({"per_category": 2.5}, "per_category must be an integer >= 1, got 2.5"),
        ({"test_fraction": 0}, r"test_fraction must be a number in \(0, 1\), got 0"),
        ({"test_fraction": 1.0}, r"test_fraction must be a number in \(0, 1\), got 1.0"),
        ({"split_seed": -1}, "split_seed must be an integer >= 0, got -1"),
        ({"source": "web"}, "source must be one of auto, sample, full, got 'web'"),
        ({"categories": []}, "categories is empty"),
        ({"categories": ["cat", "Cat"]}, "categories lists cat more than once"),
        ({"categories": [3]}, "category must be a string, got 3"),
    ],
)
def test_bad_arguments(kwargs, message):
    kwargs.setdefault("source", "sample")

    with pytest.raises(DataError, match=message):
        load_quickdraw(**kwargs)


def test_auto_falls_back_to_sample(caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="smoe.data"):
        data = load_quickdraw(["face", "eye"], cache_dir=tmp_path)

    (record,) = caplog.records
    assert data.source == "sample"
    assert "full QuickDraw data is absent" in record.getMessage()
    assert "using the bundled sample" in record.getMessage()
    assert "face 250, eye 3000" in record.getMessage()


def test_auto_uses_cached_files(caplog, tmp_path):
    (tmp_path / "numpy_bitmap").mkdir()
    for name in ("face", "eye"):
        np.save(tmp_path / "numpy_bitmap" / f"{name}.npy", np.array(read_sample(name)[:20]))

    with caplog.at_level(logging.WARNING, logger="smoe.data"):
        data = load_quickdraw(["face", "eye"], cache_dir=tmp_path)

    assert data.source == "full"
    assert data.counts()["eye"] == {"train": 18, "test": 2}
    assert caplog.records == []


def test_auto_reports_corrupt_cached_file(tmp_path):
    (tmp_path / "numpy_bitmap").mkdir()
    (tmp_path / "numpy_bitmap" / "eye.npy").write_bytes(b"\x93NUMPY")

    with pytest.raises(DataError, match=r"eye\.npy: not a valid .npy file"):
        load_quickdraw(["eye"], cache_dir=tmp_path)


def test_sample_categories():
    assert len(available_sample_categories()) == 20


def test_dataclass_is_frozen(data):
    with pytest.raises(AttributeError):
        data.source = "full"


def test_counts_empty_category():
    empty = QuickDrawData(
        categories=("a", "b"),
        train_images=torch.zeros((1, 28, 28), dtype=torch.uint8),
        train_labels=torch.zeros(1, dtype=torch.int64),
        test_images=torch.zeros((1, 28, 28), dtype=torch.uint8),
        test_labels=torch.zeros(1, dtype=torch.int64),
        source="sample",
    )

    assert empty.counts()["b"] == {"train": 0, "test": 0}
