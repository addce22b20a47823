"""Where runs live: a local folder, or an object store behind an fsspec URL (`s3://bucket/prefix`, `gs://...`,
`az://...`).

Local paths (and `file://` URLs) keep the directory layout of format version 1 and are read and written with plain
file calls. Object stores cannot append, so runs there use the segment layout of format version 2
(docs/run-format.md, "Runs on object storage"); `ObjectStore` is the small interface both the writer
(`monitor/remote_writer.py`) and the readers (`monitor/remote_reader.py`) go through.

Credentials come only from each backend's own environment and configuration (for S3: `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_PROFILE`, ~/.aws); nothing here reads, stores or prints them.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kerascope.monitor import format as fmt

# The pip extra that brings each backend (pyproject.toml [project.optional-dependencies]).
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_LOOKS_LIKE_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(?!//)")  # "s3:bucket": a URL with its slashes lost


def url_protocol(logdir: str | os.PathLike[str]) -> str | None:
    """The protocol of an fsspec URL (`"s3"` for `s3://bucket/runs`); None for a local path or a `file://` URL."""
    match = _URL.match(os.fspath(logdir))
    if match is None or match.group(1).lower() in ("file", "local"):
        return None
    return match.group(1).lower()


def local_path(logdir: str | os.PathLike[str]) -> str:
    """A local logdir as a path (`file:///x/runs` -> `/x/runs`). Raises ValueError for `s3:bucket` (slashes lost)."""
    text = os.fspath(logdir)
    match = _URL.match(text)
    if match is not None:
        return urlsplit(text).path
    lost = _LOOKS_LIKE_URL.match(text)
    if lost is not None and lost.group(1).lower() in EXTRAS:
        raise ValueError(f"logdir {text!r} looks like a URL without its '//': write {lost.group(1)}://...")
    return text


def redact_url(url: str) -> str:
    """`url` without user name, password and query (where some backends accept keys): safe to record and show."""
    if url_protocol(url) is None:
        return url
    parts = urlsplit(url)
    # The host as written: `hostname` would drop an IPv6 address's brackets and lowercase it, and `port` raises on a
    # port that is not a number.
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def missing_backend_message(protocol: str, reason: str = "") -> str:
    extra = EXTRAS.get(protocol)
    install = f'pip install "kerascope[{extra}]"' if extra else f"install the fsspec backend for {protocol}://"
    return f"runs on {protocol}:// need a storage backend that is not installed: {install}" + (
        f" ({reason})" if reason else "")


def filesystem_class(protocol: str) -> type:
    """The fsspec filesystem class for `protocol`; ImportError naming the pip extra when it is not installed."""
    try:
        import fsspec
    except ImportError:
        raise ImportError(missing_backend_message(protocol, "fsspec is missing")) from None
    try:
        return fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        raise ImportError(missing_backend_message(protocol, str(exc))) from None
    except ValueError:
        raise ValueError(f"unknown storage protocol {protocol}:// (fsspec has no backend of that name)") from None


def check_logdir(logdir: str | os.PathLike[str]) -> str:
    """Validate a logdir: a local path, or a URL whose backend is installed. Returns where the runs are: the URL as
    given, or the local folder as an absolute path (a `file://` URL's path).

    Raises:
        ImportError: the URL's backend is not installed (the message says which pip extra brings it).
        ValueError: an unknown protocol, or `s3:bucket` (a URL that lost its slashes).

    Example:
    ```python
    check_logdir("runs")                  # "/home/me/project/runs"
    check_logdir("s3://bucket/runs")      # "s3://bucket/runs" (ImportError without `pip install "kerascope[s3]"`)
    ```
    """
    text = os.fspath(logdir)
    protocol = url_protocol(text)
    if protocol is None:
        return os.path.abspath(local_path(text))
    filesystem_class(protocol)
    if not urlsplit(text).netloc:
        raise ValueError(f"logdir {redact_url(text)!r} names no bucket or container")
    return text


class StorageError(OSError):
    """An object-store request failed (network, credentials, missing bucket): the message says which, in words."""


def describe_error(exc: BaseException) -> str:
    """A short, credential-free description of a storage failure."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "nosuchbucket" in lowered or "bucket does not exist" in lowered or "specified bucket" in lowered:
        return f"the bucket does not exist ({type(exc).__name__})"
    refused = ("accessdenied", "invalidaccesskeyid", "signaturedoesnotmatch", "forbidden")
    if isinstance(exc, PermissionError) or any(word in lowered for word in refused):
        return f"access denied: check the credentials in the backend's environment or config ({type(exc).__name__})"
    return f"{type(exc).__name__}: {text[:200]}"


class ObjectStore:
    """A runs root on an object store: objects addressed by `<run id>/<relative path>` under the URL's prefix.

    Listings are never cached by the backend (a new segment must show at the next poll); each `listing()` of a run is
    one recursive LIST request.

    Args:
        url: `protocol://bucket/prefix` (the runs root).
        storage_options: passed to the fsspec filesystem (credentials belong in the backend's environment instead).

    Example:
    ```python
    store = ObjectStore("s3://bucket/runs")
    store.put("20260101-120000-mlp-1a2b3c4d/run.json", b"{}")
    print(store.listing("20260101-120000-mlp-1a2b3c4d"))
    ```
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        check_logdir(url)
        self.protocol = url_protocol(url)
        self.url = redact_url(url).rstrip("/")
        cls = filesystem_class(self.protocol)
        options: dict[str, Any] = {"use_listings_cache": False, "skip_instance_cache": True}
        if self.protocol in ("s3", "s3a"):
            # Fail fast and let the caller retry: the uploader backs off on its own, and a dashboard poll that hangs
            # on a dead endpoint for a minute (botocore's defaults) would hold up every session.
            options["config_kwargs"] = {"connect_timeout": 5, "read_timeout": 30, "retries": {"max_attempts": 2}}
        options.update(storage_options)
        self.fs = cls(**options)
        self.root = self.fs._strip_protocol(url).rstrip("/")

    def key(self, relpath: str) -> str:
        return f"{self.root}/{relpath}" if relpath else self.root

    def run_url(self, run_id: str) -> str:
        return f"{self.url}/{run_id}"

    def put(self, relpath: str, data: bytes) -> None:
        """Write one whole object (object stores replace it atomically: readers see the old or the new one)."""
        self._call(self.fs.pipe_file, self.key(relpath), data)

    def get(self, relpath: str, start: int | None = None, end: int | None = None) -> bytes:
        """An object's bytes (or a range of them). FileNotFoundError when it does not exist."""
        return self._call(self.fs.cat_file, self.key(relpath), start=start, end=end)

    def delete(self, relpaths: list[str]) -> None:
        if relpaths:
            self._call(self.fs.rm, [self.key(relpath) for relpath in relpaths])

    def listing(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Every object under `prefix` (a run id, or a folder in it): {relative path to the root: info}."""
        found = self._call(self.fs.find, self.key(prefix), detail=True)
        cut = len(self.root) + 1
        return {path[cut:]: info for path, info in found.items() if info.get("type", "file") == "file"}

    def check(self) -> None:
        """One request that fails clearly when the bucket is missing or the credentials are refused."""
        bucket = self.root.split("/", 1)[0]
        self._call(self.fs.ls, bucket, detail=False)

    def _call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FileNotFoundError as exc:
            text = str(exc).lower()
            if "bucket" in text and ("not exist" in text or "nosuchbucket" in text):
                raise StorageError(describe_error(exc)) from None
            raise
        except Exception as exc:  # fsspec's OSErrors, and botocore / aiohttp errors that it does not translate
            raise StorageError(describe_error(exc)) from None


def segment_name(stream: str, seq: int) -> str:
    """`segments/<stream>/<seq>.jsonl`: the `seq`-th segment (1-based) of a stream."""
    return f"{fmt.SEGMENTS_DIR}/{stream}/{seq:0{fmt.SEGMENT_DIGITS}d}.jsonl"


def parse_segment(relpath: str) -> tuple[str, int] | None:
    """(stream, seq) of a segment's path inside a run, or None for anything else."""
    parts = relpath.split("/")
    if len(parts) != 3 or parts[0] != fmt.SEGMENTS_DIR or not parts[2].endswith(".jsonl"):
        return None
    digits = parts[2][: -len(".jsonl")]
    if not digits.isdigit() or parts[1] not in fmt.STREAM_FILES:
        return None
    return parts[1], int(digits)


def backoff(attempt: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Seconds to wait before retry `attempt` (1, 2, 4, ... up to `cap`)."""
    return min(cap, base * (2 ** max(attempt - 1, 0)))

