"""ImageUrls: CloudFront signed, CloudFront plain, and store-presigned URLs."""

import base64
import json
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from storage.errors import StorageConfigError
from storage.s3 import S3Storage
from storage.urls import ImageUrls

DOMAIN = "d1234.cloudfront.net"
KEY_PAIR_ID = "K2JCJMDEHXQW5F"
NOW = 1_700_000_000.75
TTL = 3600
ODD_KEY = "originals/a b+ü?#%&.jpg"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def private_key_pem(private_key: rsa.RSAPrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture
def signed_urls(private_key_pem: bytes) -> ImageUrls:
    return ImageUrls(
        ttl_seconds=TTL,
        cloudfront_domain=DOMAIN,
        cloudfront_key_id=KEY_PAIR_ID,
        cloudfront_private_key_pem=private_key_pem,
        clock=lambda: NOW,
    )


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def cloudfront_b64decode(text: str) -> bytes:
    """CloudFront's URL-safe base64 swaps + = / for - _ ~."""
    return base64.b64decode(text.translate(str.maketrans("-_~", "+=/")))


def test_signed_url_carries_expires_signature_and_key_pair_id(signed_urls: ImageUrls) -> None:
    query = query_of(signed_urls.url_for("originals/abc.jpg"))

    assert set(query) == {"Expires", "Signature", "Key-Pair-Id"}
    assert query["Key-Pair-Id"] == KEY_PAIR_ID


def test_signed_url_is_https_on_the_domain_with_the_key_as_path(signed_urls: ImageUrls) -> None:
    parts = urlsplit(signed_urls.url_for("originals/abc.jpg"))

    assert (parts.scheme, parts.netloc, parts.path) == ("https", DOMAIN, "/originals/abc.jpg")


def test_signed_url_expires_ttl_seconds_after_now(signed_urls: ImageUrls) -> None:
    assert query_of(signed_urls.url_for("originals/abc.jpg"))["Expires"] == str(int(NOW) + TTL)


def test_signature_verifies_with_the_public_key_over_the_canned_policy(
    signed_urls: ImageUrls, private_key: rsa.RSAPrivateKey
) -> None:
    url = signed_urls.url_for("originals/abc.jpg")
    query = query_of(url)
    # The canned policy as AWS documents it: compact JSON, Resource = the URL without its query.
    policy = json.dumps(
        {
            "Statement": [
                {
                    "Resource": url.split("?", 1)[0],
                    "Condition": {"DateLessThan": {"AWS:EpochTime": int(query["Expires"])}},
                }
            ]
        },
        separators=(",", ":"),
    )

    private_key.public_key().verify(  # raises InvalidSignature on mismatch
        cloudfront_b64decode(query["Signature"]),
        policy.encode(),
        padding.PKCS1v15(),
        hashes.SHA1(),  # noqa: S303 -- the algorithm CloudFront canned policies use
    )


def test_signed_url_quotes_a_key_with_odd_characters(signed_urls: ImageUrls) -> None:
    parts = urlsplit(signed_urls.url_for(ODD_KEY))

    assert parts.path == "/originals/a%20b%2B%C3%BC%3F%23%25%26.jpg"
    assert unquote(parts.path) == f"/{ODD_KEY}"
    assert set(parse_qs(parts.query)) == {"Expires", "Signature", "Key-Pair-Id"}


def test_domain_alone_gives_plain_https_urls_with_the_key_as_path() -> None:
    urls = ImageUrls(ttl_seconds=TTL, cloudfront_domain=DOMAIN)

    assert urls.url_for("restored/abc.png") == f"https://{DOMAIN}/restored/abc.png"


def test_plain_url_quotes_a_key_with_odd_characters() -> None:
    url = ImageUrls(ttl_seconds=TTL, cloudfront_domain=DOMAIN).url_for(ODD_KEY)

    assert urlsplit(url).query == ""
    assert unquote(urlsplit(url).path) == f"/{ODD_KEY}"


def test_without_cloudfront_urls_come_from_the_presigner_with_the_ttl() -> None:
    calls: list[tuple[str, int]] = []

    def presigner(key: str, *, ttl_seconds: int) -> str:
        calls.append((key, ttl_seconds))
        return f"https://store.example/{key}?sig"

    urls = ImageUrls(ttl_seconds=TTL, presigner=presigner)

    assert urls.url_for("originals/abc.jpg") == "https://store.example/originals/abc.jpg?sig"
    assert calls == [("originals/abc.jpg", TTL)]


async def test_s3_presigned_url_from_image_urls_fetches_the_object(s3_storage: S3Storage) -> None:
    await s3_storage.put_bytes("originals/abc.jpg", b"jpeg", content_type="image/jpeg")
    urls = ImageUrls(ttl_seconds=TTL, presigner=s3_storage.presigned_get_url)

    async with httpx.AsyncClient() as http:
        reply = await http.get(urls.url_for("originals/abc.jpg"))

    assert (reply.status_code, reply.content) == (200, b"jpeg")


@pytest.mark.parametrize(
    ("domain", "key_id", "with_pem"),
    [
        pytest.param(DOMAIN, KEY_PAIR_ID, False, id="key-id-without-key"),
        pytest.param(DOMAIN, None, True, id="key-without-key-id"),
        pytest.param(None, KEY_PAIR_ID, True, id="signing-key-without-domain"),
        pytest.param(None, None, False, id="nothing-and-no-presigner"),
    ],
)
def test_half_configuration_is_refused_with_a_one_line_value_error(
    private_key_pem: bytes, domain: str | None, key_id: str | None, with_pem: bool
) -> None:
    with pytest.raises(StorageConfigError) as caught:
        ImageUrls(
            ttl_seconds=TTL,
            cloudfront_domain=domain,
            cloudfront_key_id=key_id,
            cloudfront_private_key_pem=private_key_pem if with_pem else None,
        )

    assert isinstance(caught.value, ValueError)
    assert "\n" not in str(caught.value)


def test_a_pem_that_does_not_parse_is_refused_at_construction() -> None:
    with pytest.raises(StorageConfigError, match="PEM"):
        ImageUrls(
            ttl_seconds=TTL,
            cloudfront_domain=DOMAIN,
            cloudfront_key_id=KEY_PAIR_ID,
            cloudfront_private_key_pem=b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
        )


def test_a_non_rsa_key_is_refused_at_construction() -> None:
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(StorageConfigError, match="RSA"):
        ImageUrls(
            ttl_seconds=TTL,
            cloudfront_domain=DOMAIN,
            cloudfront_key_id=KEY_PAIR_ID,
            cloudfront_private_key_pem=ec_pem,
        )


@pytest.mark.parametrize("domain", ["https://d1234.cloudfront.net", "d1234.cloudfront.net/", ""])
def test_a_domain_that_is_not_a_bare_host_is_refused(domain: str) -> None:
    with pytest.raises(StorageConfigError, match="CLOUDFRONT_DOMAIN"):
        ImageUrls(ttl_seconds=TTL, cloudfront_domain=domain)


def test_a_ttl_that_is_not_positive_is_refused() -> None:
    with pytest.raises(StorageConfigError, match="SIGNED_URL_TTL_SECONDS"):
        ImageUrls(ttl_seconds=0, cloudfront_domain=DOMAIN)
