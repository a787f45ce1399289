"""URLs through which readers fetch stored images.

Three set-ups, chosen once at construction from plain values:

* CloudFront domain + key-pair id + private key: CloudFront signed URLs (canned policy)
  that expire ``ttl_seconds`` after they are minted;
* CloudFront domain alone: plain ``https://{domain}/{key}`` URLs;
* neither: the store's own presigned URLs (S3 presigned GET), with the same lifetime.

Whatever the set-up, a URL's path is the object key, percent-quoted.

An RSA signature costs about a millisecond of CPU, and a page of 100 jobs needs 200 of them, on
the event loop. A signed URL is therefore reused for the same key for a short window (30 s, or a
twentieth of a shorter TTL): a URL served from it expires at least ``ttl - window`` seconds after
it is served, never later than ``ttl``, and repeated, aliased or polled pages cost no signing.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote

from botocore.signers import CloudFrontSigner
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from storage.errors import StorageConfigError

# How long a signed URL is reused: long enough to absorb aliased and polled pages, short enough
# that URLs stay minted at read (readers always get >= 95% of the TTL, and within 30 s of it).
REUSE_SECONDS = 30.0
REUSE_FRACTION = 20
# Keys remembered (two per job shown): ~10 full pages for each of 500 users active in a window,
# a few MB of strings.
SIGNED_URL_CACHE_SIZE = 10_000


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
            cache = _RecentUrls(window=reuse_window(ttl_seconds), size=SIGNED_URL_CACHE_SIZE, clock=clock)
            self._mint = lambda key: cache.get(
                key, lambda: self._signed(signer, _cloudfront_url(cloudfront_domain, key))
            )

    def url_for(self, key: str) -> str:
        """Return the URL a reader uses to fetch ``key`` now."""
        return self._mint(key)

    def _signed(self, signer: CloudFrontSigner, url: str) -> str:
        expires = datetime.fromtimestamp(int(self._clock()) + self._ttl_seconds, tz=UTC)
        signed: str = signer.generate_presigned_url(url, date_less_than=expires)
        return signed


def reuse_window(ttl_seconds: int) -> float:
    """Seconds a signed URL for one key is served again instead of signing a new one."""
    return min(REUSE_SECONDS, ttl_seconds / REUSE_FRACTION)


class _RecentUrls:
    """URLs by key, each reused for `window` seconds after it was minted; least recently used
    keys beyond `size` are forgotten. Safe to share between threads."""

    def __init__(self, *, window: float, size: int, clock: Callable[[], float]) -> None:
        self._window = window
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def get(self, key: str, mint: Callable[[], str]) -> str:
        now = self._clock()
        with self._lock:
            entry = self._items.get(key)
            if entry is not None and 0 <= now - entry[0] < self._window:
                self._items.move_to_end(key)
                return entry[1]
        url = mint()  # outside the lock: signing is the slow part
        with self._lock:
            self._items[key] = (now, url)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return url


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
