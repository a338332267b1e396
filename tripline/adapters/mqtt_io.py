"""paho's client, reading its socket in chunks and acknowledging in batches.

paho reads each packet in three or more `recv` calls (the command byte, each byte of the
remaining length, the rest), and goes through `select` between packets. Each call gives up the
interpreter lock and waits for it again; behind the service's busy threads (a 1 ms switch
interval, tripline/service/runtime.py) that wait, not the work, was the MQTT thread's cost: in
the 50,000-sensor storm's profile its thread was busy more than half the time, a fifth of it in
`recv` alone. `BufferedReads` takes what the socket has (up to 64 KiB) in one call and hands
paho its packets from memory; `pending()` tells paho's loop that bytes wait there, so it reads
them without waiting in `select` — the hook paho keeps for TLS sockets, which buffer the same
way (their own pending bytes are counted too).

Acknowledgements went the same way: paho wakes its thread (a byte on a socket pair) for every
packet another thread queues, and writes every packet with a `send` of its own — two system
calls per alert, each a lock hand-off and, on loopback, the peer's wake-up inside it.
`Client.ack_all` queues a batch's PUBACKs with one wake-up, and the writer sends a run of
PUBACKs at the head of paho's queue in one `send`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

CHUNK = 65_536  # the most one recv takes
PUBACK = 0x40  # the fixed header's first byte of every PUBACK


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
    """paho's client with `BufferedReads` on its TCP (or TLS, or Unix) socket, and `ack_all`.

    Websockets keep paho's own wrapper, which buffers already. What this overrides of paho's
    internals (`_create_socket`, `_packet_queue`, `_packet_write`, `_out_packet`) is pinned by
    tests/tripline/adapters/test_mqtt_io.py against the installed paho, with a real broker.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - paho's
        """The constructor of paho's client; a thread-local flag for ack_all."""
        super().__init__(*args, **kwargs)
        self._quiet = threading.local()  # set while this thread queues a batch of acks

    def ack_all(self, acks: Sequence[tuple[int, int]]) -> None:
        """Acknowledge (mid, qos) pairs, waking paho's thread once for all of them."""
        if not acks:  # a batch of QoS 0 alerts only: nothing to send, nothing to wake
            return
        self._quiet.on = True
        try:
            for mid, qos in acks:
                self.ack(mid, qos)
        finally:
            self._quiet.on = False
        wake = self._sockpairW
        if wake is not None:
            with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
                wake.send(b"0")

    def _create_socket(self) -> Any:  # noqa: ANN401 - paho's SocketLike
        sock = super()._create_socket()
        if self._transport == "websockets":
            return sock
        return BufferedReads(sock)

    def _packet_queue(
        self,
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: mqtt.MQTTMessageInfo | None = None,
    ) -> MQTTErrorCode:
        if not getattr(self._quiet, "on", False):
            return super()._packet_queue(command, packet, mid, qos, info)
        # As paho queues a packet, without its wake-up: ack_all sends one for the batch.
        self._out_packet.append(
            {
                "command": command,
                "mid": mid,
                "qos": qos,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": info,
            }
        )
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _packet_write(self) -> MQTTErrorCode:
        merge_acks(self._out_packet)
        return super()._packet_write()


def merge_acks(out: Any) -> None:  # noqa: ANN401 - paho's deque of packets
    """Join the run of unsent PUBACKs at the head of paho's queue into one packet.

    Only from paho's thread (its writer), the one that takes from the head; other threads only
    append. A PUBACK has no callback when written, so one packet of many writes the same bytes
    in the same order, and a partial write resumes where it stopped as paho's own does.
    """
    if len(out) < 2 or not _unsent_ack(out[0]) or not _unsent_ack(out[1]):
        return
    run = []
    while out and _unsent_ack(out[0]):
        run.append(out.popleft())
    data = b"".join(packet["packet"] for packet in run)
    out.appendleft({**run[0], "packet": data, "to_process": len(data), "pos": 0})


def _unsent_ack(packet: Any) -> bool:  # noqa: ANN401 - paho's packet dict
    return bool(packet["command"] == PUBACK and packet["pos"] == 0)


def stop_network(client: mqtt.Client) -> None:
    """loop_stop() after disconnect(): the network thread may end on its own meanwhile.

    paho's loop_stop() checks its thread, then joins it; a thread that ended in between has
    set it to None, and the join raised AttributeError (seen as a flake under load). Nothing
    is left to stop then.
    """
    with contextlib.suppress(AttributeError):
        client.loop_stop()
