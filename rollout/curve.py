"""CURVE authentication for the actor <-> learner sockets (opt-in by key files).

The learner is the CURVE server of both its sockets (episodes PULL, weights PUB); actors are clients.
Keys use the agent server's layout and helpers (agent/serving/auth.py, `streamvln serve keygen DIR
--clients actor-0 actor-1 ...`): the learner reads DIR/server.key_secret and accepts the public keys
in DIR/authorized_clients; an actor reads DIR/server.key and DIR/clients/NAME.key_secret. A peer
without an authorized key never completes the handshake, so nothing it sends is delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

from agent.serving.auth import CurveCredentials, load_server_keys


@dataclass(frozen=True)
class CurveClientKeys:
    """Where an actor finds its keys: the key directory and its client name in it."""

    directory: str
    client: str = "client"

    def credentials(self) -> CurveCredentials:
        return CurveCredentials.from_dir(self.directory, self.client)


def secure_client(socket: zmq.Socket, keys: CurveClientKeys | None) -> None:
    """Make `socket` (before connect) a CURVE client; no-op without keys."""
    if keys is None:
        return
    credentials = keys.credentials()
    socket.curve_serverkey = credentials.server_public
    socket.curve_publickey = credentials.client_public
    socket.curve_secretkey = credentials.client_secret


class CurveServer:
    """The learner's side: a ZAP authenticator on its own context, `secure(socket)` before bind."""

    def __init__(self, directory: str | Path, context: zmq.Context):
        self.public, self.secret, authorized = load_server_keys(directory)
        self.authenticator = ThreadAuthenticator(context)
        self.authenticator.start()
        self.authenticator.configure_curve(domain="*", location=str(authorized))

    def secure(self, socket: zmq.Socket) -> None:
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_server = True

    def stop(self) -> None:
        self.authenticator.stop()
