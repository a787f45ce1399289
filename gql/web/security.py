"""The web page's security headers: a content security policy that allows only what the page uses.

The page runs its own modules and nothing inline (`script-src 'self'`, `style-src 'self'`); it
talks to the API (`connect-src 'self'`, which covers the same-origin websocket), sends large
photos and loads images from storage (the storage origins given: S3, CloudFront), and signs in
with Auth0 (its domain, for the token endpoint and the silent-authentication frame). It may not
be framed by another site (clickjacking) and sends no referrer (image URLs are signed).
"""

from __future__ import annotations

from urllib.parse import urlsplit


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL (what a CSP source names)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(*, storage_origins: tuple[str, ...], auth0_domain: str | None) -> str:
    storage = " ".join(storage_origins)
    auth0 = f"https://{auth0_domain}" if auth0_domain else ""
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        # blob: the chosen photo's preview, before it is uploaded.
        "img-src": f"'self' blob: data: {storage}",
        "connect-src": f"'self' {storage} {auth0}",
        "frame-src": auth0 or "'none'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {' '.join(value.split())}" for name, value in directives.items())


def document_headers(policy: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
        # The document is tiny and must follow upgrades of its modules.
        "Cache-Control": "no-cache",
    }
