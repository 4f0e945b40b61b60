"""Downloader and archive safety against a loopback HTTP server; never touches the internet.

    .venv/bin/python -m pytest tests/tasks/data/test_download.py -q
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tasks.data.cards import RemoteFile, Source
from tracking.settings import SettingError
from tasks.data.download import ManualDownloadRequired, download, download_catalogue, download_dataset, safe_extract

CATALOGUE = download_catalogue()
from tasks.data.errors import DataError

PAYLOAD = os.urandom(300_000)


class Server:
    """Serves `payload` at any path; can honour or ignore Range and cut the first `cuts` responses."""

    def __init__(self, payload: bytes, *, honor_range=True, cut_after=None, cuts=1, status=None):
        self.payload, self.honor_range, self.cut_after, self.cuts, self.status = (
            payload, honor_range, cut_after, cuts, status)
        self.requests: list[dict] = []  # headers of each request, plus the status we answered
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                record = dict(self.headers)
                state.requests.append(record)
                if state.status:
                    record["answered"] = state.status
                    self.send_error(state.status)
                    return
                data, start = state.payload, 0
                wanted = self.headers.get("Range")
                if wanted and state.honor_range:
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        record["answered"] = 416
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    record["answered"] = 206
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    record["answered"] = 200
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if state.cut_after is not None and len(state.requests) <= state.cuts:
                    body = body[: state.cut_after]  # then the connection closes: an interrupted transfer
                    self.close_connection = True
                self.wfile.write(body)
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/file.bin"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(payload=PAYLOAD, **kwargs) -> Server:
        servers.append(Server(payload, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


FAST = dict(timeout=5, chunk=8192, backoff=0)


def test_resume_after_interrupted_transfer_sends_range_and_verifies(serve, tmp_path):
    server = serve(cut_after=100_000)
    dest = download(server.url, tmp_path / "file.bin", expected_md5=hashlib.md5(PAYLOAD).hexdigest(), **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.requests) == 2
    assert "Range" not in server.requests[0]
    assert server.requests[1]["Range"] == "bytes=100000-"
    assert server.requests[1]["answered"] == 206
    assert not (tmp_path / "file.bin.part").exists()


def test_server_ignoring_range_restarts_from_zero(serve, tmp_path):
    server = serve(honor_range=False, cut_after=100_000)
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    dest = download(server.url, tmp_path / "file.bin", expected_sha256=sha, **FAST)
    assert dest.read_bytes() == PAYLOAD  # not 100,000 bytes + the whole file appended
    assert server.requests[1]["Range"] == "bytes=100000-"
    assert server.requests[1]["answered"] == 200


def test_checksum_mismatch_deletes_part_file_and_names_digests(serve, tmp_path):
    server = serve()
    wrong = "0" * 64
    with pytest.raises(DataError) as err:
        download(server.url, tmp_path / "file.bin", expected_sha256=wrong, **FAST)
    message = str(err.value)
    assert server.url in message and wrong in message and hashlib.sha256(PAYLOAD).hexdigest() in message
    assert "Fix" in message
    assert not (tmp_path / "file.bin.part").exists() and not (tmp_path / "file.bin").exists()


def test_unknown_checksum_is_recorded_in_a_sidecar(serve, tmp_path):
    server = serve()
    dest = download(server.url, tmp_path / "file.bin", **FAST)
    sidecar = (tmp_path / "file.bin.sha256").read_text()
    assert sidecar.split()[0] == hashlib.sha256(PAYLOAD).hexdigest()
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_with_a_416(serve, tmp_path):
    server = serve()
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD)  # an earlier run died just before renaming
    dest = download(server.url, tmp_path / "file.bin", expected_md5=hashlib.md5(PAYLOAD).hexdigest(), **FAST)
    assert dest.read_bytes() == PAYLOAD and server.requests[0]["answered"] == 416


def test_http_error_is_not_retried(serve, tmp_path):
    server = serve(status=404)
    with pytest.raises(DataError, match="HTTP 404"):
        download(server.url, tmp_path / "file.bin", **FAST)
    assert len(server.requests) == 1


def test_retries_without_progress_are_bounded(serve, tmp_path):
    server = serve(cut_after=0, cuts=100)
    with pytest.raises(DataError, match="3 attempts without progress"):
        download(server.url, tmp_path / "file.bin", retries=2, **FAST)
    assert len(server.requests) == 3


# --- archives ---------------------------------------------------------------------------------


def _zip(path, entries: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def _tar(path, files: dict[str, bytes], links: dict[str, tuple[bytes, str]] = {}):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, (kind, target) in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
    return path


@pytest.mark.parametrize("bad", ["../evil.txt", "good/../../evil.txt", "/tmp/medtl-abs-evil.txt"])
def test_zip_with_escaping_entry_is_rejected_before_writing(tmp_path, bad):
    archive = _zip(tmp_path / "bad.zip", {"ok/first.txt": b"fine", bad: b"evil"})
    dest = tmp_path / "out"
    with pytest.raises(DataError) as err:
        safe_extract(archive, dest)
    assert repr(bad) in str(err.value) and "bad.zip" in str(err.value)
    assert not dest.exists()  # not even the good entry before it
    assert not (tmp_path / "evil.txt").exists() and not os.path.exists("/tmp/medtl-abs-evil.txt")


@pytest.mark.parametrize("kind,target", [(tarfile.SYMTYPE, "../../outside"), (tarfile.SYMTYPE, "/etc/passwd"),
                                         (tarfile.LNKTYPE, "../outside")])
def test_tar_with_link_outside_is_rejected_before_writing(tmp_path, kind, target):
    archive = _tar(tmp_path / "bad.tar.gz", {"data/a.txt": b"fine"}, {"data/link": (kind, target)})
    dest = tmp_path / "out"
    with pytest.raises(DataError) as err:
        safe_extract(archive, dest)
    assert "'data/link'" in str(err.value) and "bad.tar.gz" in str(err.value)
    assert not dest.exists()


def test_good_archives_extract(tmp_path):
    zipped = _zip(tmp_path / "good.zip", {"set/a/1.txt": b"one", "set/b/2.txt": b"two"})
    assert sorted(safe_extract(zipped, tmp_path / "z")) == ["set/a/1.txt", "set/b/2.txt"]
    assert (tmp_path / "z/set/b/2.txt").read_bytes() == b"two"
    tarred = _tar(tmp_path / "good.tar.gz", {"set/a/1.txt": b"one"}, {"set/alias.txt": (tarfile.SYMTYPE, "a/1.txt")})
    safe_extract(tarred, tmp_path / "t")
    assert (tmp_path / "t/set/alias.txt").read_bytes() == b"one"


def test_not_an_archive(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"html error page")
    with pytest.raises(DataError, match="neither a zip nor a tar"):
        safe_extract(tmp_path / "x.zip", tmp_path / "out")


# --- datasets ---------------------------------------------------------------------------------


def test_download_dataset_fetches_unpacks_and_skips_a_second_time(serve, tmp_path):
    archive = _zip(tmp_path / "src.zip", {"toy/a/1.png": b"x", "toy/b/2.png": b"y"}).read_bytes()
    server = serve(archive)
    catalogue = {"toy": Source(folder="toy", files=(RemoteFile(server.url, md5=hashlib.md5(archive).hexdigest()),))}
    root = tmp_path / "data"
    assert download_dataset("toy", root, catalogue=catalogue) == root / "toy"
    assert (root / "toy/b/2.png").read_bytes() == b"y"
    assert not (root / "file.bin").exists()  # the archive is removed after unpacking
    download_dataset("toy", root, catalogue=catalogue)
    assert len(server.requests) == 1


def test_optional_file_that_fails_does_not_stop_the_dataset(serve, tmp_path):
    archive = _zip(tmp_path / "src.zip", {"toy/a/1.png": b"x"}).read_bytes()
    server, missing = serve(archive), serve(status=404)
    files = (RemoteFile(server.url), RemoteFile(missing.url, archive="none", path="splits/s.csv", optional=True))
    assert download_dataset("toy", tmp_path / "d", catalogue={"toy": Source(folder="toy", files=files)}).is_dir()
    assert not (tmp_path / "d/splits/s.csv").exists() and len(missing.requests) == 1


def test_download_dataset_with_wrong_folder_says_what_the_archive_holds(serve, tmp_path):
    archive = _zip(tmp_path / "src.zip", {"other/a.png": b"x"}).read_bytes()
    server = serve(archive)
    catalogue = {"toy": Source(folder="toy", files=(RemoteFile(server.url),))}
    with pytest.raises(DataError, match=r"\['other'\]"):
        download_dataset("toy", tmp_path, catalogue=catalogue)


@pytest.mark.parametrize("name", [k for k, s in CATALOGUE.items() if s.manual])
def test_manual_datasets_give_instructions(tmp_path, name):
    with pytest.raises(ManualDownloadRequired) as err:
        download_dataset(name, tmp_path)
    assert CATALOGUE[name].page in err.value.instructions and str(tmp_path) in err.value.instructions
    assert not list(tmp_path.iterdir())


def test_catalogue_covers_every_medmnist_flag_and_size():
    from medmnist import INFO

    for flag, entry in INFO.items():
        for suffix in ("", "_64", "_128", "_224"):
            if f"url{suffix}" in entry:
                source = CATALOGUE[f"medmnist:{flag}{suffix}"]
                assert source.files[0].md5 == entry[f"MD5{suffix}"] and source.folder == f"{flag}{suffix}.npz"
    for name in ("kvasir-v1", "kvasir-v2", "hyperkvasir"):
        assert CATALOGUE[name].files[0].url.startswith("https://datasets.simula.no/downloads/")


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    with pytest.raises(DataError, match="kvasir-v2"):
        download_dataset("no-such-set", tmp_path)
    with pytest.raises(DataError, match="flag="):
        download_dataset("medmnist", tmp_path)


# --- services that never answer ---------------------------------------------------------------


@pytest.fixture
def silent_port():
    """A loopback port whose listener accepts every connection and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # kept open, never answered
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_host_that_never_answers_is_given_up_within_the_timeout(silent_port, tmp_path):
    url = f"http://127.0.0.1:{silent_port}/data/file.bin"
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        download(url, tmp_path / "file.bin", timeout=2, backoff=0)
    elapsed = time.monotonic() - start
    assert 1.5 < elapsed < 4.0  # one 2 s timeout, not retried (was 6 x 60 s)
    message = str(err.value)
    assert url in message and "sent no answer in 2 s" in message  # the thing and the place
    assert "Fix:" in message and "MEDTL_DOWNLOAD_TIMEOUT" in message and str(tmp_path / "file.bin") in message


def test_the_default_timeout_comes_from_the_environment(silent_port, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTL_DOWNLOAD_TIMEOUT", "1")
    start = time.monotonic()
    with pytest.raises(DataError, match="sent no answer in 1 s"):
        download(f"http://127.0.0.1:{silent_port}/f.bin", tmp_path / "f.bin", backoff=0)
    assert time.monotonic() - start < 2.0
    monkeypatch.setenv("MEDTL_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(SettingError, match="MEDTL_DOWNLOAD_TIMEOUT='soon'.*Fix: export MEDTL_DOWNLOAD_TIMEOUT="):
        download(f"http://127.0.0.1:{silent_port}/f.bin", tmp_path / "f.bin")


def test_a_transfer_that_stops_moving_gives_up_after_twice_the_timeout(serve, tmp_path):
    server = serve(cut_after=0, cuts=1000)  # answers, then closes before the first byte, forever
    start = time.monotonic()
    with pytest.raises(DataError, match="made no progress for") as err:
        download(server.url, tmp_path / "file.bin", timeout=0.5, backoff=0.2, retries=1000)
    assert time.monotonic() - start < 2 * 0.5 + 1.0  # bounded by time, not by the 1000 retries
    assert server.url in str(err.value) and "Fix:" in str(err.value)


def test_a_refused_connection_is_reported_at_once_as_unreachable(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # released: nothing listens there
    start = time.monotonic()
    with pytest.raises(DataError, match=f"Cannot reach 127.0.0.1:{port} to download .*Fix:"):
        download(f"http://127.0.0.1:{port}/f.bin", tmp_path / "f.bin", timeout=5, backoff=0)
    assert time.monotonic() - start < 3.0  # one quick retry, not a 5 s timeout
