"""paho's socket read in chunks: the same bytes, in order, with paho's signals kept."""

from __future__ import annotations

import collections
import socket
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import BROKER, discard_session, publish, wait_for
from tripline.adapters.mqtt_io import (
    CHUNK,
    PUBACK,
    BufferedReads,
    Client,
    merge_acks,
    raw_socket,
    stop_network,
)


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


def packet(command: int, data: bytes, pos: int = 0) -> dict[str, Any]:
    return {
        "command": command,
        "mid": 0,
        "qos": 0,
        "pos": pos,
        "to_process": len(data) - pos,
        "packet": data,
        "info": None,
    }


def test_a_run_of_acks_at_the_head_becomes_one_packet_and_the_rest_keeps_its_order() -> None:
    out = collections.deque(
        [
            packet(PUBACK, b"a1"),
            packet(PUBACK, b"a2"),
            packet(PUBACK, b"a3"),
            packet(0x30, b"publish"),
            packet(PUBACK, b"a4"),
            packet(PUBACK, b"a5"),
        ]
    )
    merge_acks(out)
    assert [(p["packet"], p["to_process"]) for p in out] == [
        (b"a1a2a3", 6),
        (b"publish", 7),
        (b"a4", 2),
        (b"a5", 2),
    ]


@pytest.mark.parametrize(
    "head",
    [
        [packet(PUBACK, b"a1", pos=1), packet(PUBACK, b"a2")],  # partly sent: left as it is
        [packet(PUBACK, b"a1")],  # one: nothing to join
        [packet(0xC0, b"ping"), packet(PUBACK, b"a1"), packet(PUBACK, b"a2")],
    ],
)
def test_what_is_not_a_run_of_unsent_acks_at_the_head_is_left_alone(
    head: list[dict[str, Any]],
) -> None:
    out = collections.deque(head)
    merge_acks(out)
    assert list(out) == head


def test_acks_of_a_batch_leave_in_one_send_and_the_broker_takes_them_all() -> None:
    """Against the installed paho and a real broker: the internals Client overrides hold."""
    client_id, topic = f"t-ack-{uuid.uuid4().hex[:8]}", f"t/ack/{uuid.uuid4().hex[:8]}"
    got: list[tuple[int, int]] = []
    subscribed = threading.Event()
    client = Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
    )
    client.on_message = lambda _c, _u, m: got.append((m.mid, m.qos))
    client.on_subscribe = lambda *_: subscribed.set()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 60
    sends: list[int] = []
    try:
        client.connect(*BROKER, clean_start=True, properties=props)
        client.subscribe(topic, qos=1)
        client.loop_start()
        assert subscribed.wait(5)
        wrapped = client.socket()
        assert isinstance(wrapped, BufferedReads)
        raw = wrapped.raw

        class Counting:
            def send(self, data: bytes) -> int:
                sends.append(len(data))
                sent: int = raw.send(data)
                return sent

            def __getattr__(self, name: str) -> Any:
                return getattr(raw, name)

        wrapped._sock = Counting()
        # The broker keeps at most its in-flight limit unacknowledged (Mosquitto: 20): the
        # acks go as the subscriber sends them, a batch at a time, while the rest arrive.
        publisher = threading.Thread(
            target=publish, args=(topic, *[f"m{n}".encode() for n in range(300)])
        )
        publisher.start()
        acked, calls, deadline = 0, 0, time.monotonic() + 20
        while acked < 300 and time.monotonic() < deadline:
            batch = got[acked:]
            if batch:
                client.ack_all(batch)
                acked, calls = acked + len(batch), calls + 1
            time.sleep(0.02)
        publisher.join(10)
        assert acked == 300
        wait_for(lambda: sum(sends) >= 300 * 4)  # a PUBACK is 4 bytes
        assert calls < 150
        assert len(sends) <= calls + 2  # a send per batch (a ping may add one), not per ack
        client.disconnect()
        stop_network(client)
        # The same session again: nothing left unacknowledged to redeliver.
        again: list[int] = []
        second = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        second.on_message = lambda _c, _u, m: again.append(m.mid)
        second.connect(*BROKER, clean_start=False, properties=props)
        second.loop_start()
        time.sleep(1.0)
        second.disconnect()
        stop_network(second)
        assert again == []
    finally:
        discard_session(client_id)
