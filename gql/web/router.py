"""Serving the web page: `/` (the document), `/web/…` (its modules), its configuration, and in
`restoration dev` the dev token.

The page calls the same GraphQL and REST API as any client; what it cannot know by itself comes
from `GET /web/config.json`: how to sign in (the dev identity, or Auth0 with `AUTH0_CLIENT_ID`),
the workflow's default denoise and the upload limit. In `restoration dev` the page asks
`POST /web/dev-token` for a token, so the person types nothing; that route exists only there.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from gql.web.security import content_security_policy, document_headers, origin_of

WEB_DIR = Path(__file__).resolve().parent
# The document lives outside the static folder, so it is only ever served with its security headers.
INDEX = WEB_DIR / "index.html"
STATIC_DIR = WEB_DIR / "static"
STATIC_PREFIX = "/web"
CONFIG_PATH = "/web/config.json"
DEV_TOKEN_PATH = "/web/dev-token"  # noqa: S105 - a path, not a secret
# The page's modules are fetched again when they changed (ETag), so an upgrade shows at once.
REVALIDATE = "no-cache"


@dataclass(frozen=True)
class WebConfig:
    """What the page is told about this deployment (nothing secret: the page is public)."""

    dev_sign_in: bool
    auth0_domain: str | None
    auth0_client_id: str | None
    auth0_audience: str | None
    default_denoise: float
    max_upload_bytes: int
    # Origins outside the API's own that the page loads images from or sends photos to (S3,
    # CloudFront); the content security policy allows them and nothing else.
    storage_origins: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        auth0 = None
        if not self.dev_sign_in:
            auth0 = {"domain": self.auth0_domain, "clientId": self.auth0_client_id, "audience": self.auth0_audience}
        return {
            "signIn": "dev" if self.dev_sign_in else "auth0",
            "auth0": auth0,
            "defaultDenoise": self.default_denoise,
            "maxUploadBytes": self.max_upload_bytes,
            "graphqlPath": "/graphql",
        }


class _PageFiles(StaticFiles):
    """The page's modules and vendored libraries, never sniffed into another type, revalidated."""

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = REVALIDATE
        return response


def storage_origins(
    *, s3_endpoint_url: str | None, s3_bucket: str | None, cloudfront_domain: str | None, local_url: str | None
) -> tuple[str, ...]:
    """Where image URLs and direct-upload URLs point: CloudFront, an S3-compatible server, AWS S3,
    or `restoration dev`'s own files (under its printed URL, which the page may be opened by another name than)."""
    origins = []
    if cloudfront_domain:
        origins.append(f"https://{cloudfront_domain}")
    if s3_endpoint_url:
        origins.append(origin_of(s3_endpoint_url))
    elif s3_bucket:
        origins.append("https://*.amazonaws.com")
    if local_url:
        origins.append(origin_of(local_url))
    return tuple(origins)


def _addressed_by_ip_or_localhost(request: Request) -> bool:
    """DNS rebinding (a hostile site's name pointed at 127.0.0.1) needs a name in `Host`; a request
    addressed to an IP literal or to `localhost` cannot be one."""
    host = request.headers.get("host", "").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def add_web_page(app: FastAPI, config: WebConfig, *, dev_token: Callable[[], str] | None = None) -> None:
    """Serve the page on `app`; `dev_token` mints a token for `restoration dev`'s identity (None
    elsewhere: the route then does not exist)."""
    policy = content_security_policy(
        storage_origins=config.storage_origins, auth0_domain=None if config.dev_sign_in else config.auth0_domain
    )
    headers = document_headers(policy)

    async def page(request: Request) -> Response:
        return FileResponse(INDEX, media_type="text/html; charset=utf-8", headers=headers)

    async def page_config(request: Request) -> Response:
        return JSONResponse(config.to_json(), headers={"Cache-Control": "no-store"})

    app.add_route("/", page, methods=["GET"], include_in_schema=False)
    app.add_route(CONFIG_PATH, page_config, methods=["GET"], include_in_schema=False)
    if dev_token is not None:
        mint = dev_token

        async def issue_dev_token(request: Request) -> Response:
            # POST, no-store, same origin only (no CORS header): another site's page can neither
            # read the answer nor, through DNS rebinding, ask under its own name.
            if not _addressed_by_ip_or_localhost(request):
                return JSONResponse({"detail": "address the dev server by IP or localhost"}, status_code=403)
            return JSONResponse({"token": mint()}, headers={"Cache-Control": "no-store"})

        app.add_route(DEV_TOKEN_PATH, issue_dev_token, methods=["POST"], include_in_schema=False)
    app.mount(STATIC_PREFIX, _PageFiles(directory=STATIC_DIR), name="web")
