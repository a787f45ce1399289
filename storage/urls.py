"""URLs through which readers fetch stored images.

Three set-ups, chosen once at construction from plain values:

* CloudFront domain + key-pair id + private key: CloudFront signed URLs (canned policy)
  that expire ``ttl_seconds`` after they are minted;
* CloudFront domain alone: plain ``https://{domain}/{key}`` URLs;
* neither: the store's own presigned URLs (S3 presigned GET), with the same lifetime.

Whatever the set-up, a URL's path is the object key, percent-quoted.
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote

from botocore.signers import CloudFrontSigner
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from storage.errors import StorageConfigError


class Presigner(Protocol):
    """Mints a time-limited URL for a key, e.g. ``S3Storage.presigned_get_url``."""

    def __call__(self, key: str, *, ttl_seconds: int) -> str: ...


class ImageUrls:
    """Mints reader URLs for object keys; all configuration is checked here, once."""

    def __init__(
        self,
        *,
        ttl_seconds: int,
        cloudfront_domain: str | None = None,
        cloudfront_key_id: str | None = None,
        cloudfront_private_key_pem: bytes | None = None,
        presigner: Presigner | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_seconds <= 0:
            raise StorageConfigError(f"SIGNED_URL_TTL_SECONDS must be positive, got {ttl_seconds}")
        if (cloudfront_key_id is None) != (cloudfront_private_key_pem is None):
            raise StorageConfigError("CLOUDFRONT_KEY_ID and CLOUDFRONT_PRIVATE_KEY_FILE must be set together")
        if cloudfront_key_id is not None and cloudfront_domain is None:
            raise StorageConfigError("CLOUDFRONT_KEY_ID and CLOUDFRONT_PRIVATE_KEY_FILE need CLOUDFRONT_DOMAIN")
        if cloudfront_domain is not None and (not cloudfront_domain or "/" in cloudfront_domain):
            raise StorageConfigError(
                f"CLOUDFRONT_DOMAIN must be a bare host name like d1234.cloudfront.net, got {cloudfront_domain!r}"
            )
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._mint: Callable[[str], str]
        if cloudfront_domain is None:
            if presigner is None:
                raise StorageConfigError("image URLs need CLOUDFRONT_DOMAIN or a store that presigns URLs")
            presign = presigner
            self._mint = lambda key: presign(key, ttl_seconds=ttl_seconds)
        elif cloudfront_key_id is None or cloudfront_private_key_pem is None:
            self._mint = lambda key: _cloudfront_url(cloudfront_domain, key)
        else:
            signer = CloudFrontSigner(cloudfront_key_id, _rsa_sha1_signer(cloudfront_private_key_pem))
            self._mint = lambda key: self._signed(signer, _cloudfront_url(cloudfront_domain, key))

    def url_for(self, key: str) -> str:
        """Return the URL a reader uses to fetch ``key`` now."""
        return self._mint(key)

    def _signed(self, signer: CloudFrontSigner, url: str) -> str:
        expires = datetime.fromtimestamp(int(self._clock()) + self._ttl_seconds, tz=UTC)
        signed: str = signer.generate_presigned_url(url, date_less_than=expires)
        return signed


def _cloudfront_url(domain: str, key: str) -> str:
    return f"https://{domain}/{quote(key, safe='/')}"


def _rsa_sha1_signer(pem: bytes) -> Callable[[bytes], bytes]:
    """Parse the PEM once; CloudFront canned policies are signed with RSA-SHA1 (PKCS#1 v1.5)."""
    try:
        private_key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise StorageConfigError("CLOUDFRONT_PRIVATE_KEY_FILE is not an unencrypted PEM private key") from exc
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise StorageConfigError("CLOUDFRONT_PRIVATE_KEY_FILE must hold an RSA private key")

    def sign(message: bytes) -> bytes:
        return private_key.sign(message, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 -- CloudFront's algorithm

    return sign
