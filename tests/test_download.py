"""Real download code against a loopback HTTP server that supports Range requests."""

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from lowshot.data import benchmarks
from lowshot.data.download import download
from lowshot.errors import DataError


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[str | None] = []

    def do_GET(self):  # noqa: N802
        body = self.files.get(self.path)
        rng = self.headers.get("Range")
        self.requests.append(rng)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if rng:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.files = {}
    _Handler.requests = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", _Handler
    srv.shutdown()


def test_download_verifies_checksum(server, tmp_path):
    url, h = server
    payload = bytes(range(256)) * 1000
    h.files["/a.bin"] = payload
    out = download(url + "/a.bin", tmp_path / "a.bin", hashlib.sha256(payload).hexdigest())
    assert out.read_bytes() == payload and not (tmp_path / "a.bin.part").exists()


def test_download_resumes_a_partial_file(server, tmp_path):
    url, h = server
    payload = b"0123456789" * 5000
    h.files["/b.bin"] = payload
    (tmp_path / "b.bin.part").write_bytes(payload[:20000])
    download(url + "/b.bin", tmp_path / "b.bin", hashlib.sha256(payload).hexdigest())
    assert h.requests == ["bytes=20000-"]
    assert (tmp_path / "b.bin").read_bytes() == payload


def test_checksum_mismatch_removes_the_download(server, tmp_path):
    url, h = server
    h.files["/c.bin"] = b"tampered"
    with pytest.raises(DataError, match="checksum mismatch"):
        download(url + "/c.bin", tmp_path / "c.bin", "0" * 64)
    assert not (tmp_path / "c.bin").exists() and not (tmp_path / "c.bin.part").exists()


def test_unreachable_server_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="place it at"):
        download("http://127.0.0.1:9/none", tmp_path / "x", None, timeout=2)


def test_fetch_unpacks_an_archive_and_checks_the_tree(server, tmp_path, monkeypatch):
    url, h = server
    files = {
        "amazon/images/mug/frame_0001.jpg": b"jpeg-bytes-1",
        "dslr/images/mug/frame_0001.jpg": b"xyz",
    }
    src = tmp_path / "src"
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    digest = benchmarks.tree_digest(src)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for rel, data in files.items():
            info = tarfile.TarInfo(f"Repo-abc123/data/Office31/{rel}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    h.files["/office.tar.gz"] = buf.getvalue()
    spec = benchmarks.DATASETS["office31"]
    good = benchmarks.RemoteArchive(url + "/office.tar.gz", "data/Office31/", digest[0], digest[1])
    monkeypatch.setitem(
        benchmarks.DATASETS, "office31", spec.__class__(**{**spec.__dict__, "archives": (good,)})
    )
    out = benchmarks.fetch("office31", tmp_path / "root")
    assert (out / "amazon/images/mug/frame_0001.jpg").read_bytes() == b"jpeg-bytes-1"
    assert benchmarks.find_dataset("office31", tmp_path / "root") == out
    bad = benchmarks.RemoteArchive(url + "/office.tar.gz", "data/Office31/", "f" * 64, 2)
    monkeypatch.setitem(
        benchmarks.DATASETS, "office31", spec.__class__(**{**spec.__dict__, "archives": (bad,)})
    )
    with pytest.raises(DataError, match="differs from the release"):
        benchmarks.fetch("office31", tmp_path / "root2")


def test_pinned_checksums_match_the_shared_copies(data_root):
    for f in benchmarks.DATASETS["amazon-reviews"].files + benchmarks.DATASETS["mnist-usps"].files:
        folder = benchmarks.DATASETS[
            "amazon-reviews" if f.dest.endswith("svmlight") else "mnist-usps"
        ].folder
        assert hashlib.sha256((data_root / folder / f.dest).read_bytes()).hexdigest() == f.sha256


def test_missing_dataset_error_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="lowshot data fetch office31"):
        benchmarks.dataset_dir("office31", tmp_path)
    with pytest.raises(DataError, match="Google Drive"):
        benchmarks.dataset_dir("pacs", tmp_path)
    assert Path(tmp_path).exists()
