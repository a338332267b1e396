"""paho's socket read in chunks: the same bytes, in order, with paho's signals kept."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.adapters.mqtt_io import CHUNK, BufferedReads, raw_socket


def pair() -> tuple[BufferedReads, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.settimeout(0.0)  # non-blocking, as paho sets it
    return BufferedReads(ours), theirs


def test_one_recv_fills_the_buffer_and_small_reads_come_from_it() -> None:
    reads, peer = pair()
    calls = []
    real = reads.raw

    class Counting:
        def recv(self, n: int) -> bytes:
            calls.append(n)
            data: bytes = real.recv(n)
            return data

    reads._sock = Counting()
    peer.sendall(b"\x30\x05hello\x40\x02ab")
    try:
        assert [reads.recv(1), reads.recv(1), reads.recv(5)] == [b"\x30", b"\x05", b"hello"]
        assert reads.pending() == 4  # the next packet waits in memory: paho skips select
        assert [reads.recv(1), reads.recv(1), reads.recv(10)] == [b"\x40", b"\x02", b"ab"]
        assert calls == [CHUNK]  # one system call for both packets
        assert reads.pending() == 0
    finally:
        real.close()
        peer.close()


def test_an_empty_buffer_and_socket_raise_as_the_socket_does_and_the_end_is_empty() -> None:
    reads, peer = pair()
    try:
        with pytest.raises(BlockingIOError):
            reads.recv(1)  # paho's "nothing yet": MQTT_ERR_AGAIN
        peer.sendall(b"x")
        peer.close()
        assert reads.recv(4) == b"x"
        assert reads.recv(4) == b""  # the broker went away: paho's connection lost
    finally:
        reads.raw.close()


def test_everything_else_is_the_socket_s() -> None:
    reads, peer = pair()
    try:
        assert reads.fileno() == reads.raw.fileno()
        assert raw_socket(reads) is reads.raw
        assert raw_socket(peer) is peer
        reads.send(b"ack")
        assert peer.recv(3) == b"ack"
    finally:
        reads.raw.close()
        peer.close()


@given(
    st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=20),
    st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=50),
)
def test_any_reads_give_the_stream_back_in_order(sent: list[bytes], sizes: list[int]) -> None:
    reads, peer = pair()
    try:
        for part in sent:
            peer.sendall(part)
        stream, got, n = b"".join(sent), b"", 0
        while len(got) < len(stream):
            size = sizes[n % len(sizes)]
            chunk = reads.recv(size)
            assert 0 < len(chunk) <= size
            got += chunk
            n += 1
        assert got == stream
        assert reads.pending() == 0
    finally:
        reads.raw.close()
        peer.close()
