"""An S3-compatible object store with the project's bucket created on start.

Two servers, chosen with ``RISKPIPE_S3_SERVER``:

- ``minio`` (default): MinIO built from source with ``go install`` into the cache (about 4.5
  minutes the first time on 2 cores with an empty Go cache; seconds afterwards). Objects
  persist in ``<state>/s3/data``, like the compose file's MinIO.
- ``moto``: moto's server from the project venv. Starts in a second, keeps objects in memory
  (gone after ``down``).

The health check and bucket creation speak S3 directly, signed with AWS Signature V4 using
only the standard library, so they work the same against both.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import importlib.util
import os
import shutil
import sys
import urllib.error
import urllib.request

from stack import config, process
from stack.base import Service
from stack.errors import StackError

MOTO_REQUIREMENT = "moto[server]>=5"
MINIO_MODULE = "github.com/minio/minio"
# MinIO publishes no semver tags, so Go pins it by a pseudo-version (the newest commit when
# this was written). Override with MINIO_VERSION in versions.env.
MINIO_DEFAULT_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def signed_request(
    method: str, endpoint: str, path: str = "/", body: bytes = b"", timeout: float = 5.0
) -> tuple[int, bytes]:
    """Sends one S3 request signed with SigV4 and the stack's credentials.

    Returns:
        (HTTP status, response body); error statuses are returned, not raised.
    """
    host = endpoint.split("://", 1)[-1].rstrip("/")
    region, access_key, secret = (
        config.s3_region(),
        config.s3_access_key(),
        config.s3_secret_key(),
    )
    now = datetime.datetime.now(datetime.UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {
        "host": host,
        "x-amz-content-sha256": payload_hash,
        "x-amz-date": amz_date,
    }
    signed = ";".join(headers)
    canonical = "\n".join(
        [
            method,
            path,
            "",
            *(f"{k}:{v}" for k, v in headers.items()),
            "",
            signed,
            payload_hash,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = b"AWS4" + secret.encode()
    for part in (day, region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    request = urllib.request.Request(
        f"http://{host}{path}", data=body or None, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class S3Server(Service):
    """What every S3 server shares: the health check, the bucket and the endpoints."""

    name = "s3"
    port_name = "S3"
    start_timeout_s = 60.0

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.address}"

    def probe(self) -> None:
        status, body = signed_request("GET", self.endpoint_url, "/", timeout=3.0)
        if status != 200 or b"ListAllMyBucketsResult" not in body:
            raise StackError(f"ListBuckets answered HTTP {status}")

    def after_start(self) -> None:
        bucket = f"/{config.s3_bucket()}"
        status, _ = signed_request("HEAD", self.endpoint_url, bucket)
        if status == 404:
            self.say("creating bucket %s", config.s3_bucket())
            status, _ = signed_request("PUT", self.endpoint_url, bucket)
        if status != 200:
            raise StackError(f"[s3] bucket {config.s3_bucket()}: HTTP {status}")

    def endpoints(self) -> dict:
        settings = {
            "s3_endpoint_url": self.endpoint_url,
            "s3_access_key_id": config.s3_access_key(),
            "s3_secret_access_key": config.s3_secret_key(),
            "s3_region_name": config.s3_region(),
        }
        return {
            **settings,
            "endpoint_url": self.endpoint_url,
            "bucket": config.s3_bucket(),
            "pipeline_args": [f"--{key}={value}" for key, value in settings.items()],
        }


class MinioS3(S3Server):
    """MinIO, built once with the Go toolchain; data persists under the state folder."""

    @property
    def version(self) -> str:
        return config.versions().get("MINIO_VERSION", MINIO_DEFAULT_VERSION)

    @property
    def binary(self):
        return config.cache_dir() / f"minio-{self.version}" / "minio"

    def is_installed(self) -> bool:
        return self.binary.exists()

    def install(self) -> None:
        if shutil.which("go") is None:
            raise StackError(
                "[s3] MinIO needs the Go toolchain on PATH "
                "(or set RISKPIPE_S3_SERVER=moto)"
            )
        self.say(
            "building MinIO %s with go install (minutes the first time) …", self.version
        )
        env = {**os.environ, "GOBIN": str(self.binary.parent), "CGO_ENABLED": "0"}
        process.run(
            ["go", "install", f"{MINIO_MODULE}@{self.version}"],
            log_path=self.install_log_path,
            what="[s3] go install minio",
            env=env,
        )

    def prepare(self) -> None:
        (self.state_dir / "data").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "server",
            "--quiet",
            "--address",
            self.address,
            str(self.state_dir / "data"),
        ]

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "MINIO_ROOT_USER": config.s3_access_key(),
            "MINIO_ROOT_PASSWORD": config.s3_secret_key(),
            "MINIO_REGION": config.s3_region(),
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
        }


class MotoS3(S3Server):
    """moto's server from the project venv: instant, in memory (any credentials accepted)."""

    def is_installed(self) -> bool:
        return all(importlib.util.find_spec(m) for m in ("moto", "flask", "flask_cors"))

    def install(self) -> None:
        if sys.prefix == sys.base_prefix:
            raise StackError(
                f"[s3] moto's server is missing; install it in the project venv: "
                f".venv/bin/pip install '{MOTO_REQUIREMENT}'"
            )
        self.say("installing %s with pip …", MOTO_REQUIREMENT)
        process.run(
            [sys.executable, "-m", "pip", "install", "-q", MOTO_REQUIREMENT],
            log_path=self.install_log_path,
            what="[s3] pip install moto",
        )
        importlib.invalidate_caches()

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "moto.server",
            "-H",
            config.HOST,
            "-p",
            str(self.port),
        ]


def s3_server() -> S3Server:
    """The server ``RISKPIPE_S3_SERVER`` asks for: ``minio`` (default) or ``moto``."""
    kind = config.env("S3_SERVER", "minio")
    servers = {"minio": MinioS3, "moto": MotoS3}
    if kind not in servers:
        raise StackError(
            f"RISKPIPE_S3_SERVER={kind!r}: choose one of {', '.join(servers)}"
        )
    return servers[kind]()
