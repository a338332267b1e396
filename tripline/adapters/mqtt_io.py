"""paho's client, reading its socket in chunks instead of a system call per field.

paho reads each packet in three or more `recv` calls (the command byte, each byte of the
remaining length, the rest), and goes through `select` between packets. Each call gives up the
interpreter lock and waits for it again; behind the service's busy threads (a 1 ms switch
interval, tripline/service/runtime.py) that wait, not the work, was the MQTT thread's cost: in
the 50,000-sensor storm's profile its thread was busy more than half the time, a fifth of it in
`recv` alone. `BufferedReads` takes what the socket has (up to 64 KiB) in one call and hands
paho its packets from memory; `pending()` tells paho's loop that bytes wait there, so it reads
them without waiting in `select` — the hook paho keeps for TLS sockets, which buffer the same
way (their own pending bytes are counted too).
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt

CHUNK = 65_536  # the most one recv takes


class BufferedReads:
    """A socket whose reads come from a buffer refilled one `recv(CHUNK)` at a time.

    Everything but `recv` and `pending` goes to the socket itself (writes, close, fileno,
    blocking mode). A read raises what the socket raises (BlockingIOError when nothing waits,
    TLS's want-read) only when the buffer is empty, and returns b'' at the end of the stream.
    """

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:  # noqa: ANN401 - a socket, or paho's TLS one
        """Wrap `sock`."""
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        """Up to `bufsize` bytes: from the buffer, refilled with one recv when it is empty."""
        if self._pos >= len(self._buf):
            self._buf = self._sock.recv(max(bufsize, CHUNK))
            self._pos = 0
        start = self._pos
        self._pos = min(len(self._buf), start + bufsize)
        return self._buf[start : self._pos]

    @property
    def raw(self) -> Any:  # noqa: ANN401 - the socket given
        """The socket itself (its options: TCP_NODELAY)."""
        return self._sock

    def pending(self) -> int:
        """Bytes read from the socket and not yet taken (and a TLS socket's own)."""
        own = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._buf) - self._pos + int(own)

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - the socket's own attributes
        """Whatever else paho asks of the socket: the socket's own."""
        return getattr(self._sock, name)


def raw_socket(sock: Any) -> Any:  # noqa: ANN401 - a socket, maybe wrapped
    """The socket under a `BufferedReads`, or `sock` itself."""
    return sock.raw if isinstance(sock, BufferedReads) else sock


class Client(mqtt.Client):
    """paho's client with `BufferedReads` on its TCP (or TLS, or Unix) socket.

    Websockets keep paho's own wrapper, which buffers already.
    """

    def _create_socket(self) -> Any:  # noqa: ANN401 - paho's SocketLike
        sock = super()._create_socket()
        if self._transport == "websockets":
            return sock
        return BufferedReads(sock)
