"""CURVE keys for remote clients (zmq.auth certificate files, plain text, no pickle).

Layout written by `generate_keys(DIR)` and read by the server and the client:
  DIR/server.key, DIR/server.key_secret          the server's key pair
  DIR/clients/NAME.key, DIR/clients/NAME.key_secret   one pair per client (give NAME.key_secret to that client)
  DIR/authorized_clients/NAME.key                public keys the server accepts
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq.auth

SERVER_NAME = "server"
AUTHORIZED_DIR = "authorized_clients"
CLIENTS_DIR = "clients"


@dataclass(frozen=True)
class CurveCredentials:
    """What a client needs: the server's public key and its own key pair (z85 bytes)."""

    server_public: bytes
    client_public: bytes
    client_secret: bytes

    @classmethod
    def from_dir(cls, directory: str | Path, client: str = "client") -> CurveCredentials:
        directory = Path(directory)
        server_public, _ = zmq.auth.load_certificate(_existing(directory / f"{SERVER_NAME}.key"))
        client_public, client_secret = zmq.auth.load_certificate(
            _existing(directory / CLIENTS_DIR / f"{client}.key_secret"))
        if client_secret is None:
            raise ValueError(f"{directory / CLIENTS_DIR / client}.key_secret holds no secret key")
        return cls(server_public, client_public, client_secret)


def load_server_keys(directory: str | Path) -> tuple[bytes, bytes, Path]:
    """(public, secret, authorized_clients dir) for the server; clear errors when files are missing."""
    directory = Path(directory)
    public, secret = zmq.auth.load_certificate(_existing(directory / f"{SERVER_NAME}.key_secret"))
    if secret is None:
        raise ValueError(f"{directory / SERVER_NAME}.key_secret holds no secret key")
    authorized = directory / AUTHORIZED_DIR
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        raise FileNotFoundError(f"no authorized client keys in {authorized} (run `streamvln serve keygen {directory}`)")
    return public, secret, authorized


def generate_keys(directory: str | Path, clients: tuple[str, ...] = ("client",)) -> dict[str, Path]:
    """Write a server key pair and one key pair per client, and authorize those clients.

    Never overwrites: an existing key file is an error, so keys in use are not lost.
    """
    directory = Path(directory)
    targets = [directory / f"{SERVER_NAME}.key_secret"] + [directory / CLIENTS_DIR / f"{n}.key_secret" for n in clients]
    for target in targets:
        if target.exists():
            raise ValueError(f"{target} already exists; refusing to overwrite keys (pick another directory)")
    (directory / CLIENTS_DIR).mkdir(parents=True, exist_ok=True)
    (directory / AUTHORIZED_DIR).mkdir(parents=True, exist_ok=True)
    written = {}
    _, written[SERVER_NAME] = map(Path, zmq.auth.create_certificates(directory, SERVER_NAME))
    for name in clients:
        public, written[name] = map(Path, zmq.auth.create_certificates(directory / CLIENTS_DIR, name))
        shutil.copy(public, directory / AUTHORIZED_DIR / f"{name}.key")
    return written


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"CURVE key file {path} not found (run `streamvln serve keygen DIR`)")
    return path
