"""What `restoration dev` adds to the API it composes: where its state lives and how it is reached."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from gql.devauth import DevIdentity
from storage.local import LocalStorage


@dataclass(frozen=True)
class DevEnvironment:
    """What `restoration dev` adds to the API: where its state lives and how it is reached."""

    data_dir: Path
    public_url: str
    identity: DevIdentity | None

    def local_storage(self) -> LocalStorage:
        """Files under `.data/objects`, served by the API at URLs signed with a key kept beside them."""
        key_file = self.data_dir / "url-signing.key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_bytes(secrets.token_bytes(32))
            key_file.chmod(0o600)
        return LocalStorage(
            root=self.data_dir / "objects", public_url=self.public_url, signing_key=key_file.read_bytes()
        )
