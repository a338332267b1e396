"""JSON logs: one object per line, personal data masked wherever it appears."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from tripline.service.logs import JsonFormatter, mask_phone, masked, to_file


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
