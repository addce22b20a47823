"""monitor/storage.py without an object-store server: logdir URLs (protocol, local path, redaction, validation),
error descriptions, segment names, backoff, and ObjectStore on fsspec's in-memory filesystem and on a local folder
seen through fsspec's `dir://` (a bucket that is a real directory)."""

from __future__ import annotations

import os
import pathlib
import sys
import uuid

import pytest
from fsspec.implementations.local import LocalFileSystem

from kerascope.monitor import format as fmt
from kerascope.monitor import storage
from kerascope.monitor.storage import ObjectStore, StorageError

# -- logdir URLs -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("logdir", "protocol"), [
    ("s3://bucket/runs", "s3"), ("S3://bucket/runs", "s3"), ("gs://b", "gs"), ("abfss://c/p", "abfss"),
    ("memory://b/runs", "memory"), ("git+ssh://host/x", "git+ssh"), ("a.b-c://x", "a.b-c"),
    ("file:///x/runs", None), ("FILE:///x", None), ("local:///x", None), ("/x/s3://y", None), ("runs", None),
    ("s3:bucket", None), ("3s://bucket", None), ("x://bucket", None), ("c://b", None),
])
def test_url_protocol_is_the_lowercased_scheme_of_a_url_and_none_for_local_paths(logdir, protocol):
    assert storage.url_protocol(logdir) == protocol


def test_url_protocol_takes_a_path_object():
    assert storage.url_protocol(os.path.join("runs", "s3")) is None
    assert storage.url_protocol(pathlib.Path("/tmp/runs")) is None


@pytest.mark.parametrize(("logdir", "path"), [
    ("file:///x/runs", "/x/runs"), ("file://host/x/runs?q=1", "/x/runs"), ("local:///y", "/y"),
    ("runs/a", "runs/a"), ("/abs/runs", "/abs/runs"), ("C:/runs", "C:/runs"), ("notes:today", "notes:today"),
])
def test_local_path_is_the_path_of_a_file_url_or_the_path_as_given(logdir, path):
    assert storage.local_path(logdir) == path


@pytest.mark.parametrize(("logdir", "scheme"), [("s3:bucket/runs", "s3"), ("GS:bucket", "GS"), ("az:c", "az"),
                                                ("abfss:c/p", "abfss"), ("s3a:b", "s3a")])
def test_local_path_refuses_a_url_that_lost_its_slashes(logdir, scheme):
    with pytest.raises(ValueError) as refused:
        storage.local_path(logdir)
    assert str(refused.value) == f"logdir {logdir!r} looks like a URL without its '//': write {scheme}://..."


@pytest.mark.parametrize(("url", "redacted"), [
    ("s3://key:secret@bucket/runs?AWSAccessKeyId=k&Signature=s#part", "s3://bucket/runs"),
    ("s3://user@bucket/a/b/", "s3://bucket/a/b/"),
    ("http://user:pw@host:9000/runs", "http://host:9000/runs"),
    ("http://[::1]:9000/runs", "http://[::1]:9000/runs"),
    ("http://user@[fe80::1]/runs", "http://[fe80::1]/runs"),
    ("s3://bucket", "s3://bucket"), ("s3://Legacy.Bucket/Runs", "s3://Legacy.Bucket/Runs"),
    ("s3://u:p@bucket:notaport/runs?k=v", "s3://bucket:notaport/runs"),
    ("/local/runs?not=a-query", "/local/runs?not=a-query"), ("file://u:p@h/x?q", "file://u:p@h/x?q"),
])
def test_redact_url_drops_credentials_and_query_and_keeps_host_port_and_path(url, redacted):
    assert storage.redact_url(url) == redacted


def test_missing_backend_message_names_the_pip_extra_or_the_protocol():
    assert storage.missing_backend_message("s3") == (
        'runs on s3:// need a storage backend that is not installed: pip install "kerascope[s3]"')
    assert storage.missing_backend_message("s3a", "No module named 's3fs'") == (
        'runs on s3a:// need a storage backend that is not installed: pip install "kerascope[s3]" '
        "(No module named 's3fs')")
    assert storage.missing_backend_message("abfs") == (
        'runs on abfs:// need a storage backend that is not installed: pip install "kerascope[azure]"')
    assert storage.missing_backend_message("gs") == (
        'runs on gs:// need a storage backend that is not installed: pip install "kerascope[gcs]"')
    assert storage.missing_backend_message("box", "x") == (
        "runs on box:// need a storage backend that is not installed: install the fsspec backend for box:// (x)")


def test_extras_map_every_cloud_protocol_to_its_pip_extra():
    assert storage.EXTRAS == {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure",
                              "abfss": "azure"}


def test_filesystem_class_is_fsspecs_class_or_an_error_that_says_what_to_install(monkeypatch):
    assert storage.filesystem_class("memory").__name__ == "MemoryFileSystem"
    with pytest.raises(ValueError) as unknown:
        storage.filesystem_class("nope")
    assert str(unknown.value) == "unknown storage protocol nope:// (fsspec has no backend of that name)"
    with pytest.raises(ImportError) as missing:  # gcsfs is not installed
        storage.filesystem_class("gs")
    assert str(missing.value).startswith(
        'runs on gs:// need a storage backend that is not installed: pip install "kerascope[gcs]" (')
    assert "gcsfs" in str(missing.value)
    monkeypatch.setitem(sys.modules, "fsspec", None)  # an environment without fsspec: the import fails
    with pytest.raises(ImportError) as no_fsspec:
        storage.filesystem_class("s3")
    assert str(no_fsspec.value) == ('runs on s3:// need a storage backend that is not installed: '
                                    'pip install "kerascope[s3]" (fsspec is missing)')


def test_check_logdir_makes_local_paths_absolute_and_keeps_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.check_logdir("runs") == str(tmp_path / "runs")
    assert storage.check_logdir(tmp_path / "a" / ".." / "b") == str(tmp_path / "b")
    assert storage.check_logdir("file:///x/runs/") == "/x/runs"
    assert storage.check_logdir("memory://bucket/runs") == "memory://bucket/runs"
    assert storage.check_logdir("s3://bucket") == "s3://bucket"
    with pytest.raises(ValueError, match=r"^logdir 's3:bucket' looks like a URL without its '//'"):
        storage.check_logdir("s3:bucket")
    with pytest.raises(ValueError) as no_bucket:
        storage.check_logdir("s3:///runs?secret=1")
    assert str(no_bucket.value) == "logdir 's3:/runs' names no bucket or container"
    with pytest.raises(ImportError, match=r'pip install "kerascope\[gcs\]"'):
        storage.check_logdir("gs://bucket/runs")
    with pytest.raises(ValueError, match="unknown storage protocol"):
        storage.check_logdir("nope://bucket/runs")


# -- errors ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("exc", "described"), [
    (FileNotFoundError("NoSuchBucket: x"), "the bucket does not exist (FileNotFoundError)"),
    (OSError("The specified bucket does not exist"), "the bucket does not exist (OSError)"),
    (OSError("The specified bucket is not valid."), "the bucket does not exist (OSError)"),
    (RuntimeError("bucket does not exist"), "the bucket does not exist (RuntimeError)"),
    (OSError("AccessDenied"), "access denied: check the credentials in the backend's environment or config (OSError)"),
    (OSError("InvalidAccessKeyId"), "access denied: check the credentials in the backend's environment or config "
                                    "(OSError)"),
    (ValueError("SignatureDoesNotMatch"), "access denied: check the credentials in the backend's environment or "
                                          "config (ValueError)"),
    (OSError("403 Forbidden"), "access denied: check the credentials in the backend's environment or config (OSError)"),
    (PermissionError("no"), "access denied: check the credentials in the backend's environment or config "
                            "(PermissionError)"),
    (TimeoutError(), "TimeoutError: TimeoutError"),
    (ConnectionError("x" * 300), "ConnectionError: " + "x" * 200),
    (OSError("bucket missing"), "OSError: bucket missing"),
])
def test_describe_error_says_what_failed_in_words(exc, described):
    assert storage.describe_error(exc) == described


# -- segments and backoff --------------------------------------------------------------------------------------------


def test_segment_names_and_their_parse():
    assert storage.segment_name("epoch", 1) == "segments/epoch/00000001.jsonl"
    assert storage.segment_name("batch", 123456789) == "segments/batch/123456789.jsonl"
    for stream in fmt.STREAM_FILES:
        assert storage.parse_segment(storage.segment_name(stream, 42)) == (stream, 42)
    assert storage.parse_segment("segments/epoch/7.jsonl") == ("epoch", 7)


@pytest.mark.parametrize("relpath", [
    "segments/epoch/00000001.json", "segments/epoch/x.jsonl", "segments/epoch/.jsonl", "segments/nope/00000001.jsonl",
    "segment/epoch/00000001.jsonl", "segments/epoch/00000001.jsonl/x", "segments/00000001.jsonl", "run.json",
    "segments/epoch/-1.jsonl", "a/segments/epoch/00000001.jsonl", "segments/epoch/0000000l.jsonl",
])
def test_parse_segment_refuses_anything_else(relpath):
    assert storage.parse_segment(relpath) is None


def test_backoff_doubles_from_the_base_up_to_the_cap():
    assert [storage.backoff(attempt) for attempt in range(0, 9)] == [1.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert [storage.backoff(attempt, base=0.5, cap=3.0) for attempt in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert storage.backoff(-3, base=2.0) == 2.0


# -- ObjectStore -----------------------------------------------------------------------------------------------------


@pytest.fixture
def memory_url() -> str:
    """A bucket of its own in fsspec's process-wide in-memory filesystem."""
    return f"memory://bucket-{uuid.uuid4().hex}/runs"


def test_an_object_store_puts_gets_ranges_lists_and_deletes(memory_url):
    store = ObjectStore(memory_url)
    assert store.protocol == "memory"
    assert store.url == memory_url
    assert store.run_url("r1") == f"{memory_url}/r1"
    store.put("r1/run.json", b'{"a": 1}')
    store.put(storage.segment_name("epoch", 1), b"first\n")  # outside any run: listed under its own prefix only
    store.put("r1/segments/epoch/00000001.jsonl", b"0123456789")
    store.put("r2/run.json", b"{}")
    assert store.get("r1/run.json") == b'{"a": 1}'
    assert store.get("r1/segments/epoch/00000001.jsonl", start=2, end=5) == b"234"
    assert store.get("r1/segments/epoch/00000001.jsonl", start=7) == b"789"
    assert store.get("r1/segments/epoch/00000001.jsonl", end=3) == b"012"
    listing = store.listing("r1")
    assert sorted(listing) == ["r1/run.json", "r1/segments/epoch/00000001.jsonl"]
    assert listing["r1/run.json"]["size"] == 8 and listing["r1/segments/epoch/00000001.jsonl"]["size"] == 10
    assert sorted(store.listing("r1/segments")) == ["r1/segments/epoch/00000001.jsonl"]
    assert sorted(store.listing("")) == ["r1/run.json", "r1/segments/epoch/00000001.jsonl", "r2/run.json",
                                         "segments/epoch/00000001.jsonl"]
    store.delete(["r1/run.json", "r2/run.json"])
    assert sorted(store.listing("")) == ["r1/segments/epoch/00000001.jsonl", "segments/epoch/00000001.jsonl"]
    store.delete([])  # nothing asked: no request (fsspec's rm of no paths would raise)
    with pytest.raises(FileNotFoundError):
        store.get("r1/run.json")
    store.put("r1/run.json", b"new")  # a whole object replaced
    store.put("r1/run.json", b"newer")
    assert ObjectStore(memory_url).get("r1/run.json") == b"newer"  # another store on the same URL sees it


def test_the_store_url_is_redacted_and_without_a_trailing_slash(memory_url):
    bucket = memory_url.removeprefix("memory://").removesuffix("/runs")
    store = ObjectStore(f"memory://user:secret@{bucket}/runs/")
    assert store.url == memory_url
    assert store.run_url("r") == f"{memory_url}/r"
    plain = ObjectStore(memory_url + "/")
    assert plain.key("") == plain.root == f"/{bucket}/runs"
    assert plain.key("r/run.json") == f"/{bucket}/runs/r/run.json"


@pytest.mark.parametrize("prefix", ["runs X", "runs ", "MAX"])
def test_a_prefix_is_kept_as_written(memory_url, prefix):
    bucket = memory_url.removeprefix("memory://").removesuffix("/runs")
    store = ObjectStore(f"memory://{bucket}/{prefix}/")
    assert store.url == f"memory://{bucket}/{prefix}"
    assert store.key("r/run.json") == f"/{bucket}/{prefix}/r/run.json"
    store.put("r/run.json", b"{}")
    assert list(store.listing("r")) == ["r/run.json"]


def test_an_object_store_needs_a_bucket_and_a_known_protocol():
    with pytest.raises(ValueError, match="names no bucket or container"):
        ObjectStore("memory:///runs")
    with pytest.raises(ValueError, match="unknown storage protocol"):
        ObjectStore("nope://bucket/runs")
    with pytest.raises(ImportError, match=r'pip install "kerascope\[gcs\]"'):
        ObjectStore("gs://bucket/runs")


def test_each_store_gets_its_own_filesystem_without_a_listings_cache(memory_url):
    first, second = ObjectStore(memory_url), ObjectStore(memory_url)
    assert first.fs is not second.fs  # fsspec's instance cache skipped: options and state are the store's own
    s3 = ObjectStore("s3://bucket/runs")  # s3fs connects lazily: no request is made here
    assert s3.fs.dircache.use_listings_cache is False
    assert s3.fs.config_kwargs == {"connect_timeout": 5, "read_timeout": 30, "retries": {"max_attempts": 2}}
    assert s3.root == "bucket/runs" and s3.url == "s3://bucket/runs"
    assert ObjectStore("s3a://bucket/runs").fs.config_kwargs["read_timeout"] == 30
    given = ObjectStore("s3://bucket/runs", config_kwargs={"read_timeout": 1}, use_listings_cache=True)
    assert given.fs.config_kwargs == {"read_timeout": 1}  # the caller's options win
    assert given.fs.dircache.use_listings_cache is True
    assert not hasattr(ObjectStore(memory_url).fs, "config_kwargs")  # botocore's timeouts are for S3 only


@pytest.fixture
def folder_store(tmp_path):
    """`dir://bucket/runs/all` over tmp_path: the bucket is tmp_path/bucket, a real directory."""
    def make(url: str = "dir://bucket/runs/all") -> ObjectStore:
        return ObjectStore(url, path=str(tmp_path), fs=LocalFileSystem(auto_mkdir=True))
    return make


def test_check_asks_for_the_bucket_only(folder_store, tmp_path):
    store = folder_store()
    assert store.root == "bucket/runs/all"
    (tmp_path / "bucket").mkdir()
    store.check()  # the bucket exists; nothing under the prefix yet
    store.put("r/run.json", b"{}")
    assert (tmp_path / "bucket" / "runs" / "all" / "r" / "run.json").read_bytes() == b"{}"
    store.check()
    with pytest.raises(StorageError) as missing:
        folder_store("dir://nosuchbucket/runs").check()
    assert str(missing.value) == "the bucket does not exist (FileNotFoundError)"
    with pytest.raises(StorageError) as said:  # a backend's "bucket ... does not exist" (S3: NoSuchBucket's text)
        folder_store("dir://the bucket does not exist/runs").check()
    assert str(said.value) == "the bucket does not exist (FileNotFoundError)"
    with pytest.raises(FileNotFoundError):  # a missing object that does not name a bucket stays FileNotFoundError
        folder_store("dir://other/runs").check()


def test_failures_other_than_a_missing_object_become_storage_errors(folder_store, tmp_path):
    store = folder_store()
    store.put("r", b"a file where a run folder would be")
    with pytest.raises(StorageError) as not_a_folder:
        store.put("r/run.json", b"{}")
    assert str(not_a_folder.value).startswith(("FileExistsError: ", "NotADirectoryError: "))
    with pytest.raises(FileNotFoundError) as missing:
        store.get("gone/run.json")
    assert not isinstance(missing.value, StorageError)
    assert store.listing("gone") == {}
