"""Signed CloudFront URLs are reused per key for a short window (30 s at most), never longer."""

from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from storage.urls import REUSE_SECONDS, ImageUrls, reuse_window

TTL = 3600
WINDOW = reuse_window(TTL)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def private_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def urls(private_key_pem: bytes, clock: Clock) -> ImageUrls:
    return ImageUrls(
        ttl_seconds=TTL,
        cloudfront_domain="d1234.cloudfront.net",
        cloudfront_key_id="K2JCJMDEHXQW5F",
        cloudfront_private_key_pem=private_key_pem,
        clock=clock,
    )


def expires(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["Expires"][0])


def test_the_same_key_within_the_window_gets_the_same_url(urls: ImageUrls, clock: Clock) -> None:
    first = urls.url_for("originals/a.jpg")
    clock.now += WINDOW - 1

    assert urls.url_for("originals/a.jpg") == first


def test_a_url_served_from_the_window_keeps_most_of_its_lifetime(urls: ImageUrls, clock: Clock) -> None:
    urls.url_for("originals/a.jpg")
    clock.now += WINDOW - 1

    remaining = expires(urls.url_for("originals/a.jpg")) - clock.now

    assert TTL - WINDOW <= remaining <= TTL


def test_after_the_window_a_fresh_url_is_signed(urls: ImageUrls, clock: Clock) -> None:
    first = urls.url_for("originals/a.jpg")
    clock.now += WINDOW

    second = urls.url_for("originals/a.jpg")

    assert second != first
    assert expires(second) == int(clock.now) + TTL


def test_other_keys_get_their_own_urls(urls: ImageUrls) -> None:
    assert urlsplit(urls.url_for("originals/a.jpg")).path != urlsplit(urls.url_for("originals/b.jpg")).path


def test_a_clock_stepping_back_never_serves_a_url_from_the_future(urls: ImageUrls, clock: Clock) -> None:
    first = urls.url_for("originals/a.jpg")
    clock.now -= 600

    assert expires(urls.url_for("originals/a.jpg")) == int(clock.now) + TTL != expires(first)


def test_the_window_is_short_and_a_small_part_of_a_short_ttl() -> None:
    assert reuse_window(3600) == REUSE_SECONDS
    assert reuse_window(60) == 3
