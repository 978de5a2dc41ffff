"""trainer.paths.download and the dataset download path, with only the network call faked.

``trainer.paths._open_url`` is the one network call; every test here replaces it with a server of local
bytes. Everything else (files, checksums, renames, retries, the data home) is real.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import threading
import urllib.error

import pytest

from trainer import data
from trainer import paths

URL = "http://example.invalid/20news-19997.tar.gz"


class FakeNetwork:
    """Stands in for ``paths._open_url``: each call takes the next planned reply (bytes or an exception)."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.calls = []

    def __call__(self, url, timeout):
        self.calls.append(url)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, FailingResponse):
            return reply
        return io.BytesIO(reply)


class FailingResponse(io.BytesIO):
    """A response that sends some bytes, then drops the connection."""

    def read(self, size=-1):
        if self.tell() > 0:
            raise ConnectionResetError("connection reset by peer")
        return super().read(4)


@pytest.fixture
def sleeps(monkeypatch):
    """Record the retry pauses instead of sleeping."""
    recorded = []
    monkeypatch.setattr(paths.time, "sleep", recorded.append)
    return recorded


def leftovers(folder):
    return sorted(path.name for path in folder.iterdir())


def test_download_writes_the_file_and_logs_url_and_size(tmp_path, monkeypatch, sleeps, caplog):
    payload = b"archive bytes " * 1000
    network = FakeNetwork(payload)
    monkeypatch.setattr(paths, "_open_url", network)
    destination = tmp_path / "home" / "20news-19997.tar.gz"
    with caplog.at_level(logging.WARNING, logger="trainer.paths"):
        result = paths.download(URL, destination, sha256=hashlib.sha256(payload).hexdigest(), size_hint="14 kB")
    assert result == destination and destination.read_bytes() == payload
    assert leftovers(destination.parent) == ["20news-19997.tar.gz"]
    assert network.calls == [URL] and sleeps == []
    assert URL in caplog.text and "14 kB" in caplog.text


def test_checksum_mismatch_fails_once_and_leaves_no_part_file(tmp_path, monkeypatch, sleeps):
    network = FakeNetwork(b"tampered bytes")
    monkeypatch.setattr(paths, "_open_url", network)
    destination = tmp_path / "20news-19997.tar.gz"
    with pytest.raises(OSError) as caught:
        paths.download(URL, destination, sha256=hashlib.sha256(b"the real bytes").hexdigest(), retries=3)
    message = str(caught.value)
    assert "checksum mismatch" in message and URL in message and str(destination) in message
    assert leftovers(tmp_path) == []
    # Other bytes at the address will not change on a retry: one download, no pause (822 MB for GloVe).
    assert len(network.calls) == 1 and sleeps == []


def test_retry_after_a_transient_failure_succeeds(tmp_path, monkeypatch, sleeps):
    payload = b"good archive"
    network = FakeNetwork(urllib.error.URLError("temporary failure in name resolution"), payload)
    monkeypatch.setattr(paths, "_open_url", network)
    destination = tmp_path / "20news-19997.tar.gz"
    paths.download(URL, destination, sha256=hashlib.sha256(payload).hexdigest())
    assert destination.read_bytes() == payload
    assert len(network.calls) == 2 and sleeps == [1.0]
    assert leftovers(tmp_path) == ["20news-19997.tar.gz"]


def test_a_dropped_connection_removes_the_part_file_before_the_retry(tmp_path, monkeypatch, sleeps):
    payload = b"complete archive bytes"
    destination = tmp_path / "20news-19997.tar.gz"
    part = tmp_path / "20news-19997.tar.gz.part"
    seen_before_retry = []

    def record_sleep(seconds):
        seen_before_retry.append(part.exists())

    monkeypatch.setattr(paths.time, "sleep", record_sleep)
    network = FakeNetwork(FailingResponse(payload), payload)
    monkeypatch.setattr(paths, "_open_url", network)
    # A stale .part from an earlier crash is overwritten, never trusted.
    part.write_bytes(b"stale partial download")
    paths.download(URL, destination, sha256=hashlib.sha256(payload).hexdigest())
    assert seen_before_retry == [False]
    assert destination.read_bytes() == payload and leftovers(tmp_path) == ["20news-19997.tar.gz"]


def test_every_attempt_failing_is_one_oserror_with_the_fix(tmp_path, monkeypatch, sleeps):
    monkeypatch.setattr(paths, "_open_url", FakeNetwork(urllib.error.URLError("no route to host")))
    destination = tmp_path / "20news-19997.tar.gz"
    with pytest.raises(OSError, match="download it by hand and place it at"):
        paths.download(URL, destination, sha256="0" * 64, retries=2)
    assert leftovers(tmp_path) == [] and sleeps == [1.0]


# ------------------------------------------------------------------ the dataset download path (data.py)


def test_resolve_downloads_the_archive_into_the_data_home_once(tiny_archives, tmp_path, monkeypatch, sleeps):
    payload = tiny_archives["19997"].archive.read_bytes()
    # Pin the tiny archive's checksum in place of the public one; the table's URL is served locally.
    pinned = dataclasses.replace(data.ARCHIVES["19997"], sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(data.ARCHIVES, "19997", pinned)
    network = FakeNetwork(payload)
    monkeypatch.setattr(paths, "_open_url", network)
    home = tmp_path / "home"
    source = data.resolve_dataset("19997", data_home=home)
    assert source == home / "20news-19997.tar.gz" and source.read_bytes() == payload
    assert network.calls == [pinned.url]
    assert len(data.load_documents(source, "19997")) == 12
    # The second time the data home has it: no network.
    assert data.resolve_dataset("19997", data_home=home) == source
    assert network.calls == [pinned.url]
    assert not any(name.endswith(".part") for name in leftovers(home))


def test_resolve_rejects_bytes_that_do_not_match_the_published_checksum(tiny_archives, tmp_path, monkeypatch,
                                                                        sleeps):
    network = FakeNetwork(tiny_archives["bydate"].archive.read_bytes())
    monkeypatch.setattr(paths, "_open_url", network)
    home = tmp_path / "home"
    with pytest.raises(OSError, match=f"checksum mismatch.*{data.ARCHIVES['bydate'].sha256}"):
        data.resolve_dataset("bydate", data_home=home)
    assert network.calls == ["https://ndownloader.figshare.com/files/5975967"]
    assert not (home / "20news-bydate.tar.gz").exists()
    assert not (home / "20news-bydate.tar.gz.part").exists()


def test_resolve_never_downloads_when_downloads_are_off(tmp_path, monkeypatch):
    network = FakeNetwork(b"unused")
    monkeypatch.setattr(paths, "_open_url", network)
    with pytest.raises(OSError, match="downloads are off"):
        data.resolve_dataset("19997", data_home=tmp_path / "home", download_if_missing=False)
    assert network.calls == []


def test_concurrent_resolves_on_one_node_download_once(tiny_archives, tmp_path, monkeypatch):
    payload = tiny_archives["18828"].archive.read_bytes()
    pinned = dataclasses.replace(data.ARCHIVES["18828"], sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(data.ARCHIVES, "18828", pinned)
    started, release, calls = threading.Event(), threading.Event(), []

    def slow_network(url, timeout):
        calls.append(url)
        started.set()
        release.wait(10)
        return io.BytesIO(payload)

    monkeypatch.setattr(paths, "_open_url", slow_network)
    home = tmp_path / "home"
    results = []
    workers = [threading.Thread(target=lambda: results.append(data.resolve_dataset("18828", data_home=home)))
               for _ in range(2)]
    workers[0].start()
    assert started.wait(10)
    workers[1].start()
    # Give the second trial time to find no archive and queue on the lock, then let the download finish.
    threading.Event().wait(0.3)
    release.set()
    for worker in workers:
        worker.join(10)
    assert calls == [pinned.url]
    assert results == [home / "20news-18828.tar.gz"] * 2


def test_file_sha256_memo_survives_many_threads_at_once(tmp_path):
    import hashlib

    from conftest import run_concurrently

    from trainer import paths as paths_module

    target = tmp_path / "blob.bin"
    target.write_bytes(b"glovesweep" * 1000)
    results, errors = run_concurrently(lambda: paths_module.file_sha256(target), 8)
    assert errors == []
    assert results == [hashlib.sha256(target.read_bytes()).hexdigest()] * 8


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "state.json"
    paths.atomic_write(target, "old")

    def failing_writer(handle):
        handle.write(b"half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        paths.atomic_write(target, failing_writer)
    assert target.read_text() == "old" and leftovers(tmp_path) == ["state.json"]
    paths.atomic_write(target, b"new bytes")
    assert target.read_bytes() == b"new bytes"
