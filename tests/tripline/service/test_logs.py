"""JSON logs: one object per line, personal data masked wherever it appears."""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

import orjson
import pytest

from tripline.service import logs
from tripline.service.logs import JsonFormatter, WriterHandler, mask_phone, masked, to_file


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("call +14155550100 now", "call +1********00 now", id="e164"),
        pytest.param("to +1 (415) 555-0100.", "to +1********00.", id="formatted"),
        pytest.param("sensor-evt-123456789", "sensor-evt-123456789", id="ids-untouched"),
        pytest.param("value 89.5 celsius", "value 89.5 celsius", id="numbers-untouched"),
    ],
)
def test_mask_phone(text: str, expected: str) -> None:
    assert mask_phone(text) == expected


def test_masked_hides_names_and_phone_fields_recursively() -> None:
    doc = {
        "customer": {"name": "Jane Doe", "phone": "4155550100", "customerId": "C-1"},
        "body": {"callbackNumbers": ["+14155550100"], "callbackUserName": "Freezer Site"},
        "detail": "calling +14155550100",
    }
    assert masked(doc) == {
        "customer": {"name": "J*** D***", "phone": "********00", "customerId": "C-1"},
        "body": {"callbackNumbers": ["*********00"], "callbackUserName": "F*** S***"},
        "detail": "calling +1********00",
    }


def test_a_record_becomes_one_masked_json_line() -> None:
    record = logging.LogRecord(
        "tripline.decision", logging.INFO, __file__, 1, "dialing %s", ("+14155550100",), None
    )
    record.decision = {"outcome": "called", "phone": "+14155550100", "name": "Jane Doe"}
    line = JsonFormatter().format(record)
    assert "\n" not in line
    doc = orjson.loads(line)
    assert doc["level"] == "info"
    assert doc["logger"] == "tripline.decision"
    assert doc["msg"] == "dialing +1********00"
    assert doc["decision"] == {"outcome": "called", "phone": "*********00", "name": "J*** D***"}
    assert doc["ts"].endswith("Z")
    assert "4155550100" not in line


@pytest.mark.parametrize(
    ("created", "ts"),
    [
        (1715702400.25, "2024-05-14T16:00:00.250Z"),
        (1715702459.5, "2024-05-14T16:00:59.500Z"),
        (1715702401.0, "2024-05-14T16:00:01.000Z"),
    ],
)
def test_the_timestamp_is_utc_to_the_millisecond(created: float, ts: str) -> None:
    record = logging.LogRecord("tripline", logging.INFO, __file__, 1, "m", None, None)
    record.created, record.msecs = created, (created - int(created)) * 1000
    assert orjson.loads(JsonFormatter().format(record))["ts"] == ts


def test_to_file_sends_every_line_to_the_file_as_masked_json(tmp_path: Path) -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    path = tmp_path / "tripline.log"
    try:
        root.setLevel(logging.INFO)
        to_file(path)
        logging.getLogger("tripline.demo").info("calling %s", "+14155550100")
        logging.getLogger("aiohttp.server").warning("a library's line")
        logging.getLogger("tripline").debug("below the level: not written")
        for handler in root.handlers:
            handler.flush()
        assert len(root.handlers) == 1  # nothing left writing to the terminal
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = saved, level
    docs = [orjson.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert [(d["logger"], d["level"], d["msg"]) for d in docs] == [
        ("tripline.demo", "info", "calling +1********00"),
        ("aiohttp.server", "warning", "a library's line"),
    ]


def lines_of(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_the_writer_writes_every_line_in_order_masked_by_the_time_it_is_closed() -> None:
    stream = io.StringIO()
    handler = WriterHandler(stream, JsonFormatter())
    log = logging.getLogger("tripline.test-writer")
    log.addHandler(handler)
    log.propagate, log.level = False, logging.INFO
    try:
        for n in range(2_500):  # more than one batch
            log.info("decision %d for %s", n, "+14155550100", extra={"decision": {"n": n}})
    finally:
        log.removeHandler(handler)
        handler.close()
    docs = lines_of(stream)
    assert [d["decision"] for d in docs] == [{"n": n} for n in range(2_500)]
    assert docs[0]["msg"] == "decision 0 for +1********00"
    handler.handle(logging.LogRecord("t", logging.INFO, __file__, 1, "after close", None, None))
    docs = lines_of(stream)  # a thread still logging at exit: written at once, not lost
    assert len(docs) == 2_501
    assert docs[-1]["msg"] == "after close"


def test_a_line_shows_its_arguments_as_they_were_when_it_was_logged() -> None:
    stream, hold = io.StringIO(), threading.Event()

    class Held(io.StringIO):
        def write(self, text: str) -> int:
            hold.wait(5)  # the writer is busy while the caller goes on
            return stream.write(text)

    handler = WriterHandler(Held(), JsonFormatter())
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "%s", (["before"],), None)
    handler.handle(record)
    assert record.args is None  # built at once: the list below is not read again
    handler.handle(logging.LogRecord("t", logging.INFO, __file__, 1, "second", None, None))
    hold.set()
    handler.close()
    assert [d["msg"] for d in lines_of(stream)] == ["['before']", "second"]


def test_a_stream_that_stops_taking_lines_costs_dropped_lines_not_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logs, "_MOST_WAITING", 10)
    stream, hold = io.StringIO(), threading.Event()

    class Blocked(io.StringIO):
        def write(self, text: str) -> int:
            hold.wait(5)
            return stream.write(text)

    handler = WriterHandler(Blocked(), JsonFormatter())
    first = logging.LogRecord("t", logging.INFO, __file__, 1, "first", None, None)
    handler.handle(first)
    for _ in range(100):  # the writer holds "first" in its blocked write; these queue
        if handler._queue.empty():
            break
        threading.Event().wait(0.01)
    for n in range(30):
        handler.handle(logging.LogRecord("t", logging.INFO, __file__, 1, f"m{n}", None, None))
    hold.set()
    handler.close()
    docs = lines_of(stream)
    assert [d["msg"] for d in docs[:11]] == ["first", *(f"m{n}" for n in range(10))]
    assert docs[-1]["level"] == "warning"
    assert docs[-1]["msg"] == "20 log lines dropped: the log stream did not take them"


def test_a_line_that_cannot_be_formatted_is_reported_and_the_rest_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = io.StringIO()
    handler = WriterHandler(stream, JsonFormatter())
    handler.handle(logging.LogRecord("t", logging.INFO, __file__, 1, "%d", ("x",), None))
    handler.handle(logging.LogRecord("t", logging.INFO, __file__, 1, "fine", None, None))
    handler.close()
    assert [d["msg"] for d in lines_of(stream)] == ["fine"]
    assert "Logging error" in capsys.readouterr().err
