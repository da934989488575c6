"""Downloader and its command line against a real HTTP server on 127.0.0.1."""

import http.server
import shutil
import threading
import urllib.parse
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from smoe.data import DataError, download, load_quickdraw, read_numpy_bitmap
from smoe.data.__main__ import main
from smoe.data.download import default_cache_dir, file_url
from smoe.data.sample import read_sample

DATA = Path(__file__).parent / "data"


class BucketHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder like Google's bucket; files named in `truncate` stop halfway."""

    truncate = ()

    def do_GET(self):
        self.server.requests.append(urllib.parse.unquote(self.path))
        if urllib.parse.unquote(self.path) in self.truncate:
            path = Path(self.translate_path(self.path))
            body = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    root = tmp_path_factory.mktemp("bucket")
    bitmaps = root / "full" / "numpy_bitmap"
    bitmaps.mkdir(parents=True)
    np.save(bitmaps / "cat.npy", np.array(read_sample("cat")[:30]))
    np.save(bitmaps / "eye.npy", np.array(read_sample("eye")[:30]))
    np.save(bitmaps / "alarm clock.npy", np.array(read_sample("alarm clock")[:30]))
    np.save(bitmaps / "pencil.npy", np.array(read_sample("pencil")[:30]))
    np.save(bitmaps / "snowflake.npy", np.zeros((30, 700), dtype=np.uint8))

    simplified = root / "full" / "simplified"
    simplified.mkdir()
    shutil.copy(DATA / "simplified_eye.ndjson", simplified / "eye.ndjson")
    (simplified / "cat.ndjson").write_text('{"drawing": [[[0, 1], [0, 1]]]}\n{"drawing": oops}\n')

    sketchrnn = root / "sketchrnn"
    sketchrnn.mkdir()
    stroke3 = np.empty(2, dtype=object)
    stroke3[:] = [np.array([[0, 0, 0], [255, 100, 1]], dtype=np.int16)] * 2
    np.savez_compressed(sketchrnn / "eye.npz", train=stroke3, valid=stroke3, test=stroke3)

    handler = type("Handler", (BucketHandler,), {"truncate": ("/full/numpy_bitmap/pencil.npy",)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/full"
    server.shutdown()
    server.server_close()


@pytest.fixture
def fetch(bucket, tmp_path):
    server, base_url = bucket

    def run(categories, fmt="numpy_bitmap", **kwargs):
        kwargs.setdefault("offline", False)
        return download(categories, fmt, cache_dir=tmp_path, base_url=base_url, progress=False, **kwargs)

    server.requests.clear()
    return run


def leftovers(folder):
    return [path.name for path in folder.rglob("*") if path.name.endswith(".part")]


def test_download_bitmap(fetch, tmp_path):
    (path,) = fetch(["cat"])

    assert path == tmp_path / "numpy_bitmap" / "cat.npy"
    assert np.array_equal(read_numpy_bitmap(path).reshape(30, 784), read_sample("cat")[:30])


def test_download_encodes_spaces(fetch, bucket):
    (path,) = fetch(["alarm_clock"])

    assert path.name == "alarm clock.npy"
    assert bucket[0].requests == ["/full/numpy_bitmap/alarm clock.npy"]


def test_download_skips_cached(fetch, bucket):
    fetch(["cat"])
    bucket[0].requests.clear()

    fetch(["cat"])

    assert bucket[0].requests == []


def test_download_replaces_invalid_cached(fetch, tmp_path):
    target = tmp_path / "numpy_bitmap" / "cat.npy"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"junk")

    fetch(["cat"])

    assert read_numpy_bitmap(target).shape == (30, 28, 28)


def test_download_404(fetch, tmp_path):
    with pytest.raises(DataError, match=r"HTTP 404 .* for http://127\.0\.0\.1:\d+/full/numpy_bitmap/face\.npy"):
        fetch(["face"])
    assert not (tmp_path / "numpy_bitmap" / "face.npy").exists()
    assert leftovers(tmp_path) == []


def test_download_truncated(fetch, tmp_path):
    with pytest.raises(DataError, match="pencil.npy is truncated"):
        fetch(["pencil"])
    assert not (tmp_path / "numpy_bitmap" / "pencil.npy").exists()
    assert leftovers(tmp_path) == []


def test_download_wrong_shape(fetch, tmp_path):
    with pytest.raises(DataError, match=r"snowflake\.npy is invalid: .*shape is \(30, 700\)"):
        fetch(["snowflake"])
    assert not (tmp_path / "numpy_bitmap" / "snowflake.npy").exists()
    assert leftovers(tmp_path) == []


def test_download_malformed_ndjson(fetch, tmp_path):
    with pytest.raises(DataError, match="line 2: invalid JSON"):
        fetch(["cat"], "simplified")
    assert not (tmp_path / "simplified" / "cat.ndjson").exists()


def test_download_simplified(fetch, tmp_path):
    (path,) = fetch(["eye"], "simplified")

    assert path.read_bytes() == (DATA / "simplified_eye.ndjson").read_bytes()


def test_download_sketchrnn_sibling_folder(fetch, bucket):
    (path,) = fetch(["eye"], "sketchrnn")

    assert path.name == "eye.npz"
    assert bucket[0].requests == ["/sketchrnn/eye.npz"]


def test_download_offline_missing(fetch, bucket):
    with pytest.raises(DataError, match="cat.npy is missing and offline mode is on"):
        fetch(["cat"], offline=True)
    assert bucket[0].requests == []


def test_download_offline_from_environment(fetch, bucket, monkeypatch):
    monkeypatch.setenv("SMOE_OFFLINE", "1")

    with pytest.raises(DataError, match="offline mode is on"):
        fetch(["cat"], offline=None)
    assert bucket[0].requests == []


def test_download_offline_cached(fetch):
    fetch(["cat"])

    assert len(fetch(["cat"], offline=True)) == 1


def test_download_unknown_category(fetch, bucket):
    with pytest.raises(DataError, match="unknown category 'catt'"):
        fetch(["catt"])
    assert bucket[0].requests == []


def test_download_unreachable(tmp_path):
    # Port 9 (discard) on 127.0.0.1 has no listener in a test environment.
    with pytest.raises(DataError, match=r"cannot reach http://127\.0\.0\.1:9/"):
        download(["cat"], cache_dir=tmp_path, base_url="http://127.0.0.1:9/full", offline=False, timeout=5)


def test_download_bad_format(tmp_path):
    with pytest.raises(DataError, match="fmt must be one of"):
        download(["cat"], "png", cache_dir=tmp_path, offline=True)


def test_file_url_layout():
    assert file_url("https://host/q/full", "alarm clock", "numpy_bitmap") == "https://host/q/full/numpy_bitmap/alarm%20clock.npy"
    assert file_url("https://host/q/full", "cat", "sketchrnn") == "https://host/q/sketchrnn/cat.npz"


def test_default_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SMOE_DATA", str(tmp_path))

    assert default_cache_dir() == tmp_path


def test_load_full_downloads(bucket, tmp_path):
    data = load_quickdraw(["cat", "eye"], source="full", cache_dir=tmp_path, base_url=bucket[1], offline=False)

    assert data.source == "full"
    assert data.counts() == {"cat": {"train": 27, "test": 3}, "eye": {"train": 27, "test": 3}}


def test_load_full_offline_missing(tmp_path):
    with pytest.raises(DataError, match="offline mode is on"):
        load_quickdraw(["cat"], source="full", cache_dir=tmp_path, offline=True)


def test_cli_download(bucket, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SMOE_OFFLINE")
    code = main(["download", "--cache-dir", str(tmp_path), "--base-url", bucket[1], "--no-progress", "eye"])

    assert code == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "numpy_bitmap" / "eye.npy")


def test_cli_download_error(bucket, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SMOE_OFFLINE")
    code = main(["download", "--cache-dir", str(tmp_path), "--base-url", bucket[1], "face"])

    assert code == 1
    assert capsys.readouterr().err.startswith("error: download failed: HTTP 404")


def test_cli_offline_flag(bucket, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SMOE_OFFLINE")
    bucket[0].requests.clear()

    code = main(["download", "--offline", "--cache-dir", str(tmp_path), "--base-url", bucket[1], "eye"])

    assert code == 1
    assert "offline mode is on" in capsys.readouterr().err
    assert bucket[0].requests == []


def test_cli_info(bucket, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SMOE_OFFLINE")
    main(["download", "--cache-dir", str(tmp_path), "--base-url", bucket[1], "--no-progress", "eye"])
    capsys.readouterr()

    main(["info", "--cache-dir", str(tmp_path)])
    out = capsys.readouterr().out

    assert f"cache dir: {tmp_path}" in out
    assert "numpy_bitmap/eye.npy" in out
    assert "30 images" in out
    assert "face: 250" in out
