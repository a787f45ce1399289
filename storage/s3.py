"""Object store on S3 or an S3-compatible server (MinIO, R2, moto).

boto3 is synchronous, so every network call runs in a worker thread through
``asyncio.to_thread``; nothing here blocks the event loop. Errors are translated into
the tree in :mod:`storage.errors`, with the botocore error kept as ``__cause__``.
"""

import asyncio
import os
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

import boto3
from boto3.exceptions import Boto3Error
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)

from storage.base import ObjectInfo, SignedUpload
from storage.errors import ObjectChanged, ObjectNotFound, StorageConfigError, StorageError, StorageUnavailable

# A live endpoint accepts a TCP connection in milliseconds; a dead one must fail fast.
CONNECT_TIMEOUT_SECONDS = 2.0
# Longest silence between response bytes; generous enough for a slow 8 MiB upload part.
READ_TIMEOUT_SECONDS = 20.0
# First try plus one retry: hides a dropped pooled connection without doubling an outage's wait.
# (botocore's "max_attempts" key counts retries only, hence "total_max_attempts".)
RETRY_TOTAL_MAX_ATTEMPTS = 2
# Matches asyncio.to_thread's default worker cap (at most 32) so threads never queue for a socket.
MAX_POOL_CONNECTIONS = 32

# Error codes meaning "the store is not usable right now" whatever the HTTP status.
_UNAVAILABLE_CODES = frozenset(
    {"AccessDenied", "AllAccessDisabled", "ExpiredToken", "InvalidAccessKeyId", "InvalidToken", "NoSuchBucket"}
    | {"RequestTimeTooSkewed", "RequestTimeout", "SignatureDoesNotMatch", "SlowDown"}
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_CONNECTION_ERRORS = (ConnectionError, HTTPClientError, IncompleteReadError)
_CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)

T = TypeVar("T")


def make_s3_client(
    *,
    region: str | None,
    endpoint_url: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
) -> BaseClient:
    """Build the S3 client; call it once at start-up and pass the client around.

    ``None`` credentials mean boto3's own chain (environment, profile, instance role).
    Credentials are resolved here, once, so signing a URL later does no I/O (except a
    refresh of temporary credentials near their expiry, which botocore does in-line).
    A custom ``endpoint_url`` switches to path-style addressing, which S3-compatible
    servers expect.
    """
    if (access_key_id is None) != (secret_access_key is None):
        raise StorageConfigError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together")
    options: dict[str, Any] = {
        "signature_version": "s3v4",
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "read_timeout": READ_TIMEOUT_SECONDS,
        "retries": {"total_max_attempts": RETRY_TOTAL_MAX_ATTEMPTS, "mode": "standard"},
        "max_pool_connections": MAX_POOL_CONNECTIONS,
    }
    if endpoint_url is not None:
        options["s3"] = {"addressing_style": "path"}
        # Many S3-compatible servers reject the CRC trailers boto3 sends by default.
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=region,
    )
    return session.client("s3", endpoint_url=endpoint_url, config=Config(**options))


class S3Storage:
    """An :class:`storage.base.ObjectStore` backed by one bucket."""

    def __init__(self, *, client: BaseClient, bucket: str) -> None:
        self._client = client
        self._bucket = bucket
        self._where = f"bucket {bucket!r} at {client.meta.endpoint_url}"

    async def put_file(self, key: str, fileobj: BinaryIO, *, content_type: str) -> None:
        """Stream ``fileobj`` (seekable) from its current position to its end in one PUT.

        One request with a known length, read from the file in small blocks: boto3's transfer
        manager would split it into 8 MiB parts uploaded by several threads at once, each held in
        memory, and a multipart upload costs three round trips more. A single PUT takes up to 5 GB.
        """
        start = fileobj.tell()
        length = fileobj.seek(0, os.SEEK_END) - start
        fileobj.seek(start)
        await self._run(
            key,
            self._client.put_object,
            Bucket=self._bucket,
            Key=key,
            Body=fileobj,
            ContentLength=length,
            ContentType=content_type,
        )

    async def put_bytes(self, key: str, data: bytes, *, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing any object already there."""
        await self._run(key, self._client.put_object, Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)

    async def get_bytes(self, key: str) -> bytes:
        """Return the object's content; ``ObjectNotFound`` when there is none."""
        return await self._run(key, self._read, key)

    async def exists(self, key: str) -> bool:
        """Tell whether ``key`` exists (S3 answers 404 for a missing bucket too: False)."""
        return await self._run(key, self._head, key)

    async def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""
        await self._run(key, self._client.delete_object, Bucket=self._bucket, Key=key)

    async def ping(self) -> None:
        """Return when the bucket answers (HeadBucket); ``StorageUnavailable`` otherwise."""
        await self._run(None, self._client.head_bucket, Bucket=self._bucket)

    def presigned_get_url(self, key: str, *, ttl_seconds: int) -> str:
        """Return a SigV4 presigned GET URL valid for ``ttl_seconds``.

        Local CPU work with the credentials resolved by :func:`make_s3_client`, so it is
        safe to call from the event loop.
        """
        try:
            url: str = self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=ttl_seconds
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, key=key) from exc
        return url

    def presigned_put_url(self, key: str, *, size: int, content_type: str | None, ttl_seconds: int) -> SignedUpload:
        """A SigV4 presigned PUT whose signed headers include Content-Length (and Content-Type).

        S3 refuses a PUT whose length or type differs from the signed ones (403), so the staged
        object has exactly the declared length. Local CPU work, like ``presigned_get_url``.
        """
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": key, "ContentLength": size}
        headers = {"Content-Length": str(size)}
        if content_type is not None:
            params["ContentType"] = content_type
            headers["Content-Type"] = content_type
        try:
            url: str = self._client.generate_presigned_url("put_object", Params=params, ExpiresIn=ttl_seconds)
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, key=key) from exc
        return SignedUpload(url=url, method="PUT", headers=headers)

    async def stat(self, key: str) -> ObjectInfo | None:
        """HeadObject: the length and ETag, or None when there is no object."""
        return await self._run(key, self._stat, key)

    async def download(self, key: str, fileobj: BinaryIO, *, if_match: str) -> int:
        """GetObject (that version only), streamed into ``fileobj`` chunk by chunk."""
        return await self._run(key, self._download, key, fileobj, if_match)

    async def copy(self, source: str, destination: str, *, content_type: str, if_match: str) -> None:
        """CopyObject inside the bucket, only while ``source`` is still ``if_match``."""
        await self._run(source, self._copy, source, destination, content_type, if_match)

    def _stat(self, key: str) -> ObjectInfo | None:
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise
        return ObjectInfo(size=int(head["ContentLength"]), etag=str(head["ETag"]))

    def _download(self, key: str, fileobj: BinaryIO, if_match: str) -> int:
        try:
            body = self._client.get_object(Bucket=self._bucket, Key=key, IfMatch=if_match)["Body"]
        except ClientError as exc:
            if _precondition_failed(exc):
                raise ObjectChanged(key) from exc
            raise
        written = 0
        try:
            for chunk in body.iter_chunks(DOWNLOAD_CHUNK_BYTES):
                fileobj.write(chunk)
                written += len(chunk)
        finally:
            body.close()
        return written

    def _copy(self, source: str, destination: str, content_type: str, if_match: str) -> None:
        try:
            self._client.copy_object(
                Bucket=self._bucket,
                Key=destination,
                CopySource={"Bucket": self._bucket, "Key": source},
                CopySourceIfMatch=if_match,
                ContentType=content_type,
                MetadataDirective="REPLACE",
            )
        except ClientError as exc:
            if _precondition_failed(exc):
                raise ObjectChanged(source) from exc
            raise

    def _read(self, key: str) -> bytes:
        body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return data

    def _head(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise
        return True

    async def _run(self, key: str | None, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(func, *args, **kwargs)
        except (BotoCoreError, ClientError, Boto3Error) as exc:
            raise self._translate(exc, key=key) from exc

    def _translate(self, exc: Exception, *, key: str | None) -> StorageError:
        """Map a boto error; ``key`` is None for bucket-level calls, where 404 means no bucket."""
        if isinstance(exc, _CONNECTION_ERRORS):
            return StorageUnavailable(f"storage unreachable: {self._where} ({type(exc).__name__})")
        if isinstance(exc, _CREDENTIAL_ERRORS):
            return StorageUnavailable(f"storage credentials missing or incomplete for {self._where}")
        if not isinstance(exc, ClientError):
            return StorageError(f"storage failure on {self._where} ({type(exc).__name__})")
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        refused = f"storage refused {exc.operation_name} on {self._where}: {code} (HTTP {status})"
        if code in _UNAVAILABLE_CODES or status >= 500 or status == 403:
            return StorageUnavailable(refused)
        if status == 404 or code in _NOT_FOUND_CODES:
            return ObjectNotFound(key) if key is not None else StorageUnavailable(refused)
        return StorageError(refused)


# Chunks a staged upload is streamed in, from S3 to a spool file: small enough to keep memory flat.
DOWNLOAD_CHUNK_BYTES = 256 * 1024
_PRECONDITION_FAILED = frozenset({"PreconditionFailed", "412"})


def _precondition_failed(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in _PRECONDITION_FAILED or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412
