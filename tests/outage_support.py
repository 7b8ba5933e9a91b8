"""Making an emulator unreachable the way an outage does, so the real clients see "connection refused".

``TcpRelay`` forwards a local port to an emulator; ``close()`` stops listening and drops every connection
(the port then refuses, as a stopped server's does), ``open()`` listens on the same port again. The
emulator keeps its state throughout, so "GitLab comes back" finds the same variables.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from rotator.sandbox.seed import CredentialSeed, config_toml


def free_port() -> int:
    """A port nothing listens on (connecting to it is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TcpRelay:
    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> TcpRelay:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name=f"relay:{self.port}").start()
        return self

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (b if source is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for end in (a, b):
                with contextlib.suppress(OSError):
                    end.close()


@contextlib.contextmanager
def relay_to(target_port: int) -> Iterator[TcpRelay]:
    relay = TcpRelay(target_port).open()
    try:
        yield relay
    finally:
        relay.close()


def config_with_timeout(tmp_path: Path, urls: Mapping[str, str], seeds: Sequence[CredentialSeed], *, after: str,
                        timeout: str, **service: str) -> Path:
    """rotator.toml in ``tmp_path`` for the sandbox at ``urls`` (the outage's endpoint swapped in by the caller),
    with ``timeout`` set in the section that holds the line ``after``: a short client timeout keeps each test's
    wait for the dead endpoint within seconds."""
    text = config_toml(urls, seeds, database_url=f"sqlite:///{tmp_path / 'rotator.db'}", extra_service=service)
    assert after in text, f"{after!r} is not in the config"
    path = tmp_path / "rotator.toml"
    path.write_text(text.replace(after, f'{after}\ntimeout = "{timeout}"'))
    return path
