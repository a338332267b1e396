"""The adversarial alert corpus of tests/integration/test_adversarial.py.

Promise 5 of docs/architecture.md: bad input gets a clear answer, and nothing else.

Hypothesis strategies over the alert payload's grammar. Each example is a `Case`: a payload
(built as a tree, so it can hold what no JSON encoder writes: repeated keys, invalid UTF-8,
lone surrogate escapes, 1e400, nesting 1,024 deep) and an `Expect`, what the contract says must
become of it: accepted (HTTP 202, a record), refused (HTTP 400/413, a report on the rejected
topic) naming a field and a reason, or either where the contract leaves the choice open.

Every example is one change to a valid alert, so the expectation is exact. Its key carries
`SENTINEL`, replaced by a fresh nonce each time the case is sent: no two sends share a key
(hypothesis sends an example again while shrinking).
"""

from __future__ import annotations

import string
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import strategies as st

SENTINEL = "\ue000"  # private use: never in a generated id, replaced by the nonce
_SENTINEL_BYTES = SENTINEL.encode()
NONCE_LEN = 10
_PAD_MARK = b"\x00pad\x00"  # a raw NUL is never valid JSON: encode() cannot write this

ID_FIELDS = ("idempotencyKey", "sensorId", "customerId")
REQUIRED = (*ID_FIELDS, "alertType", "timestamp", "telemetryData")
REJECT_REASONS = frozenset({"invalid_json", "missing_field", "invalid_field", "too_large"})
ORJSON_DEPTH = 1024  # orjson.loads reads 1,024 levels of arrays and objects, no more

SAFE = string.ascii_letters + string.digits + "-_."
CONTROL = [chr(c) for c in range(0x20)] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)]
BIDI = [
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
    "\u200e",
    "\u200f",
    "\u061c",
]
REFUSED_CHARS = frozenset(CONTROL + BIDI)
"""Refused in every string field (the contract: control and bidi characters)."""
STRUCTURAL = [
    "{",
    "}",
    ":",
    "/",
    "%",
    "?",
    "#",
    "..",
    "*",
    "[",
    "]",
    "\\",
    '"',
    "'",
    "<",
    ">",
    "&",
    "+",
    "=",
    "~",
    "@",
    "!",
    "$",
    "^",
    "|",
    "`",
    ",",
    ";",
    "%2F",
    "%00",
    "%25",
    "%7B",
    "../",
    "{a:",
    "}:rec",
    "}:cool:",
    "}:readings:",
    "{c:",
    "{dlq}",
    "\\u0000",
]
"""Printable ASCII with a meaning in URLs, globs or our Redis key names: ids accept them."""
OTHER = [
    " ",
    "\u00a0",
    "\u3000",
    "é",
    "e\u0301",
    "ß",
    "İ",
    "ﬀ",
    "\uff2b",  # fullwidth K
    "漢",
    "😀",
    "\u200b",
    "\u200d",
    "\u2028",
    "\ufeff",
]
"""Spaces, non-ASCII, zero-width: the contract leaves ids free to accept or refuse them."""
INVALID_UTF8 = [
    b"\xff",
    b"\xfe\xff",
    b"\x80",
    b"\xc0\xaf",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xf8\x88\x80\x80\x80",
]
LONE_SURROGATES = [b"\\ud800", b"\\udfff", b"\\ud800\\ud800", b"\\udc00\\ud800", b"\\uDBFFx"]
NON_FINITE = [
    b"1e400",
    b"-1e400",
    b"1E+400",
    b"1e99999999",
    b"NaN",
    b"-NaN",
    b"Infinity",
    b"-Infinity",
    b"inf",
    b"nan",
]
BAD_LITERALS = [b"0x10", b"+1", b".5", b"1.", b"01", b"--1", b"1e", b"TRUE", b"None"]
HUGE_INTEGERS = [2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, -(2**64), 2**70, 10**400]
ALERT_TYPES = ("temp_critical", "temp_high", "battery_low", "vibration_spike", "door_open")
SEVERITIES = ("critical", "high", "warning", "info", "minor")
UNITS = ("celsius", "°C", "%RH", "m/s²", "ppm", "kPa", "µS/cm", "{u}:x")


# --- the payload tree -----------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """Bytes written as they are: what no JSON encoder would write."""

    data: bytes

    def __repr__(self) -> str:
        shown = self.data if len(self.data) <= 80 else self.data[:40] + b"..." + self.data[-20:]
        return f"Raw({shown!r}, {len(self.data)} bytes)"


@dataclass(frozen=True)
class Members:
    """An object as a list of members: a key may repeat."""

    items: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Pad:
    """A string of 'x' filled in at render time: the payload then has exactly `size` bytes."""


def encode(node: Any) -> bytes:  # noqa: PLR0911
    """The JSON text of a tree of dicts, lists, scalars, Raw, Members and Pad."""
    if isinstance(node, Raw):
        return node.data
    if isinstance(node, Pad):
        return b'"' + _PAD_MARK + b'"'
    if isinstance(node, Members):
        return _object(node.items)
    if isinstance(node, dict):
        return _object(tuple(node.items()))
    if isinstance(node, list | tuple):
        return b"[" + b",".join(encode(v) for v in node) + b"]"
    if isinstance(node, bool) or node is None:
        return orjson.dumps(node)
    if isinstance(node, int):
        return str(node).encode()  # orjson refuses integers beyond 64 bits
    if isinstance(node, float):
        return repr(node).encode()  # finite floats only: repr is valid JSON for them
    return orjson.dumps(node)


def _object(items: tuple[tuple[str, Any], ...]) -> bytes:
    return b"{" + b",".join(orjson.dumps(k) + b":" + encode(v) for k, v in items) + b"}"


def nested(kind: str, levels: int, leaf: Any = 1) -> Raw:
    """A value of `levels` nested arrays ('array'), objects ('object') or both ('mixed')."""
    opens, closes = [], []
    for level in range(levels):
        as_array = kind == "array" or (kind == "mixed" and level % 2 == 0)
        opens.append(b"[" if as_array else b'{"n":')
        closes.append(b"]" if as_array else b"}")
    return Raw(b"".join(opens) + encode(leaf) + b"".join(reversed(closes)))


# --- what must become of a payload ----------------------------------------------------------

Named = tuple[str | None, frozenset[str]]
"""A refusal must name this field (None: any field) with one of these reasons."""


@dataclass(frozen=True)
class Expect:
    """What the contract allows for one payload."""

    label: str
    accept: bool
    """A 202 (a record) is allowed."""
    reject: bool
    """A 400/413 (a report on the rejected topic) is allowed."""
    named: tuple[Named, ...] = ()
    """A refusal names at least one of these (empty: any problem will do)."""

    @property
    def too_large(self) -> bool:
        """The payload is over the size limit: HTTP answers 413."""
        return any(reasons == {"too_large"} for _, reasons in self.named)


def ok(label: str) -> Expect:
    """Must be accepted."""
    return Expect(label, accept=True, reject=False)


def bad(label: str, *named: Named) -> Expect:
    """Must be refused, naming one of `named`."""
    return Expect(label, accept=False, reject=True, named=named)


def either(label: str, *named: Named) -> Expect:
    """May be accepted or refused (naming one of `named`)."""
    return Expect(label, accept=True, reject=True, named=named)


def field(name: str | None, *reasons: str) -> Named:
    """A problem for `name` with one of `reasons` (invalid_field when none are given)."""
    return name, frozenset(reasons or ("invalid_field",))


WHOLE_BODY = field("", "invalid_json")


@dataclass(frozen=True)
class Case:
    """One payload and what must become of it."""

    members: tuple[tuple[str, Any], ...]
    """The top-level object's members in order (a key may repeat)."""
    expect: Expect
    whole: bytes | None = None
    """The body itself instead of `members` (not an object, or not JSON at all)."""
    before: bytes = b""
    after: bytes = b""
    size: int = 0
    """Pad the payload (its Pad member) to exactly this many bytes; 0: no padding."""
    drop: int = 0
    """Cut this many bytes off the end (a truncated payload)."""

    def key(self, nonce: str) -> str | None:
        """The idempotency key a reader of the payload finds (the last one, as orjson reads)."""
        found = [v for k, v in self.members if k == "idempotencyKey"]
        if self.whole is not None or not found or not isinstance(found[-1], str):
            return None
        return found[-1].replace(SENTINEL, nonce)

    def recorded(self, nonce: str) -> dict[str, str]:
        """The ids an accepted payload's record must show."""
        out = {}
        for name in ID_FIELDS:
            found = [v for k, v in self.members if k == name]
            if found and isinstance(found[-1], str):
                out[name] = found[-1].replace(SENTINEL, nonce)
        return out

    def render(self, nonce: str) -> bytes:
        """The payload's bytes, with this send's nonce."""
        assert len(nonce) == NONCE_LEN
        if self.whole is not None:
            return self.whole
        body = encode(Members(self.members)).replace(_SENTINEL_BYTES, nonce.encode())
        body = self.before + body + self.after
        if self.size:
            fill = max(0, self.size - (len(body) - len(_PAD_MARK)))
            body = body.replace(_PAD_MARK, b"x" * fill, 1)
        return body[: len(body) - self.drop] if self.drop else body


@dataclass(frozen=True)
class Limits:
    """The service's validation limits, which the expectations depend on."""

    max_string: int = 128
    max_depth: int = 32
    max_body: int = 65536
    max_age: float = 86400.0
    max_skew: float = 300.0

    @classmethod
    def of(cls, config: Any) -> Limits:
        """From a loaded config (the depth and age limits are read when the schema has them)."""
        v = config.validate
        return cls(
            max_string=v.max_string_length,
            max_depth=getattr(v, "max_depth", cls.max_depth),
            max_body=config.http.max_body_bytes,
            max_age=float(getattr(v, "max_age_seconds", cls.max_age)),
            max_skew=float(v.max_future_skew_seconds),
        )


# --- the valid alert every case changes -----------------------------------------------------

safe_text = st.text(SAFE, min_size=1, max_size=12)
readings = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)


def zulu(epoch: float) -> str:
    """ISO-8601 in UTC with 'Z', to the second."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@st.composite
def alerts(draw: st.DrawFn) -> dict[str, Any]:
    """A valid alert of a customer no CRM knows (it becomes a task, never a call)."""
    doc: dict[str, Any] = {
        "idempotencyKey": f"adv-{draw(safe_text)}-{SENTINEL}",
        "sensorId": f"adv-{draw(safe_text)}",
        "customerId": f"ADV-{draw(safe_text)}",
        "alertType": draw(st.sampled_from(ALERT_TYPES)),
        "timestamp": zulu(time.time() - draw(st.integers(0, 3600))),
        "telemetryData": {
            "currentValue": draw(readings),
            "threshold": draw(readings),
            "unit": draw(st.sampled_from(UNITS)),
        },
    }
    if draw(st.booleans()):
        doc["status"] = draw(st.sampled_from(("firing", "resolved")))
    if draw(st.booleans()):
        doc["severity"] = draw(st.sampled_from(SEVERITIES))
    return doc


def make_case(draw: st.DrawFn, doc: dict[str, Any], expect: Expect, **kw: Any) -> Case:
    """The case of `doc` with its members in a drawn order."""
    members = tuple(draw(st.permutations(list(doc.items()))))
    return Case(members, expect, **kw)


def _with(doc: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    return {**doc, name: value}


def _telemetry(doc: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    return {**doc, "telemetryData": {**doc["telemetryData"], name: value}}


def text_verdict(
    name: str, value: str, *, max_len: int, allowed: str, label: str, extra_len: int = 0
) -> Expect:
    """A string field's value: refused if too long, blank or with control/bidi characters.

    Accepted when every character is in `allowed`; otherwise the contract leaves it open.
    """
    length = len(value) + extra_len
    if length > max_len:
        return bad(f"{label}: {length} characters", field(name))
    if any(c in REFUSED_CHARS for c in value):
        return bad(f"{label}: control or bidi character", field(name))
    if not value.replace(SENTINEL, "x").strip():
        return bad(f"{label}: blank", field(name, "invalid_field", "missing_field"))
    if all(c in allowed for c in value.replace(SENTINEL, "x")):
        return ok(label)
    return either(label, field(name))


FULLWIDTH_DIGITS = "".join(chr(0xFF10 + d) for d in range(10))
PRINTABLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


def id_verdict(name: str, value: str, limits: Limits, label: str) -> Expect:
    """An id: printable ASCII (braces, colons, slashes, percent, ...) is accepted."""
    extra = NONCE_LEN - 1 if SENTINEL in value else 0
    return text_verdict(
        name,
        value,
        max_len=limits.max_string,
        allowed=PRINTABLE_ASCII,
        label=label,
        extra_len=extra,
    )


# --- the categories -------------------------------------------------------------------------


@st.composite
def id_cases(draw: st.DrawFn, limits: Limits) -> Case:
    """Every character class in every id; long ids; ids of the wrong type."""
    doc = draw(alerts())
    name = draw(st.sampled_from(ID_FIELDS))
    kind = draw(st.sampled_from(("structural", "control", "bidi", "other", "long", "type")))
    if kind == "type":
        value: Any = draw(st.sampled_from([0, 1.5, True, False, None, [], {}, ["a"], {"a": "b"}]))
        return make_case(
            draw,
            _with(doc, name, value),
            bad(f"{name} of type {type(value).__name__}", field(name, *REJECT_REASONS)),
        )
    if kind == "long":
        length = draw(
            st.one_of(
                st.integers(1, 400),
                st.sampled_from(
                    [limits.max_string - 1, limits.max_string, limits.max_string + 1, 10_000]
                ),
            )
        )
        text = draw(st.text(SAFE, min_size=1, max_size=1)) * length
    else:
        tokens = {"structural": STRUCTURAL, "control": CONTROL, "bidi": BIDI, "other": OTHER}[kind]
        around = st.text(SAFE, max_size=6)
        inner = "".join(draw(st.lists(st.sampled_from(tokens), min_size=1, max_size=3)))
        text = draw(around) + inner + draw(around)
    if name == "idempotencyKey":
        text = (
            text[: max(0, len(text) - NONCE_LEN)] + SENTINEL if kind == "long" else text + SENTINEL
        )
    expect = id_verdict(name, text, limits, f"{name} {kind} {text[:40]!r}")
    return make_case(draw, _with(doc, name, text), expect)


def _offset(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


@st.composite
def timestamp_cases(draw: st.DrawFn, limits: Limits) -> Case:  # noqa: C901, PLR0912, PLR0915
    """Odd formats and offsets, no offset, too old, far future, garbage, wrong types."""
    doc = draw(alerts())
    now = time.time()
    margin = 300  # a batch is sent seconds after it is drawn
    kind = draw(
        st.sampled_from(
            ("recent", "odd", "naive", "old", "edge", "future", "soon", "fixed", "junk", "type")
        )
    )
    offset = draw(st.integers(-14 * 4, 14 * 4)) * 15
    name = "timestamp"
    value: Any
    if kind in ("recent", "odd", "naive"):
        when = datetime.fromtimestamp(now - draw(st.integers(0, 3600)), _offset(offset))
        if kind == "recent":
            digits = draw(st.integers(0, 6))
            value = when.isoformat(timespec="seconds" if digits == 0 else "microseconds")
            if digits:
                head, _, tail = value.partition(".")
                value = f"{head}.{tail[:digits]}{tail[6:]}"
            if offset == 0 and draw(st.booleans()):
                value = value.replace("+00:00", "Z")
            expect = ok(f"timestamp {value}")
        elif kind == "naive":
            value = when.replace(tzinfo=None).isoformat(timespec="seconds")
            expect = bad(f"timestamp without offset {value}", field(name))
        else:
            base = when.isoformat(timespec="seconds")
            day = when.strftime("%Y-%m-%d")
            clock = when.strftime("%H:%M:%S")
            sign = "+" if offset >= 0 else "-"
            hh, mm = divmod(abs(offset), 60)
            styles = [
                base.replace("T", " "),
                base.replace("T", "t"),
                when.strftime("%Y%m%dT%H%M%S") + f"{sign}{hh:02d}{mm:02d}",
                when.strftime("%G-W%V-%uT") + clock + f"{sign}{hh:02d}:{mm:02d}",
                when.strftime("%Y-%jT") + clock + f"{sign}{hh:02d}:{mm:02d}",
                base[:16] + base[19:],  # no seconds
                f"{day}T{clock}.123456789{sign}{hh:02d}:{mm:02d}",
                f"{day}T{clock}{sign}{hh:02d}",
                base.replace("+00:00", "-00:00"),
                base.replace("+00:00", "z"),
                f"{day}T{clock} UTC",
                f"{day}T{clock}GMT",
                base.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
                base.translate(str.maketrans("0123456789", FULLWIDTH_DIGITS)),
                base + " ",
                " " + base,
            ]
            value = draw(st.sampled_from(styles))
            expect = either(f"timestamp in an odd format {value!r}", field(name))
    elif kind == "old":
        age = limits.max_age + margin + draw(st.integers(0, 100 * 365 * 86400))
        value = datetime.fromtimestamp(now - age, _offset(offset)).isoformat(timespec="seconds")
        expect = bad(f"timestamp {age:.0f}s old {value}", field(name))
    elif kind == "edge":
        age = limits.max_age + draw(st.integers(-margin, margin))
        value = zulu(now - age)
        expect = either(f"timestamp about max_age old {value}", field(name))
    elif kind == "future":
        ahead = limits.max_skew + margin + draw(st.integers(0, 50 * 365 * 86400))
        value = datetime.fromtimestamp(now + ahead, _offset(offset)).isoformat(timespec="seconds")
        expect = bad(f"timestamp {ahead:.0f}s ahead {value}", field(name))
    elif kind == "soon":
        value = zulu(now + draw(st.integers(0, int(limits.max_skew) - 120)))
        expect = ok(f"timestamp a little ahead {value}")
    elif kind == "fixed":
        value = draw(
            st.sampled_from(
                [
                    "0001-01-01T00:00:00+14:00",
                    "0001-01-01T00:00:00-14:00",
                    "0001-01-01T00:00:00Z",
                    "1969-12-31T23:59:59-14:00",
                    "1970-01-01T00:00:00Z",
                    "9999-12-31T23:59:59-14:00",
                    "9999-12-31T23:59:59.999999+14:00",
                    "9999-12-31T23:59:59Z",
                ]
            )
        )
        expect = bad(f"timestamp {value}", field(name))
    elif kind == "junk":
        value = draw(
            st.one_of(
                st.sampled_from(
                    [
                        "",
                        "now",
                        "2024-13-45T25:61:61Z",
                        "2024-05-13T23:59:60Z",
                        "2024-05-13T24:00:00Z",
                        "2024-05-13T14:32:00+24:00",
                        "2024-05-13T14:32:00+99:99",
                        zulu(now)[:-1] + ".000000000000000000000000000000000Z",
                        zulu(now).replace("T", "\u202eT"),
                        zulu(now) + "\x00",
                    ]
                ),
                st.text(max_size=60),
            )
        )
        expect = bad(f"timestamp {value!r}", field(name, "invalid_field", "missing_field"))
    else:
        value = draw(st.sampled_from([int(now), now, None, True, [], {}, [zulu(now)]]))
        expect = bad(
            f"timestamp of type {type(value).__name__}",
            field(name, "invalid_field", "missing_field"),
        )
    return make_case(draw, _with(doc, name, value), expect)


@st.composite
def number_cases(draw: st.DrawFn) -> Case:
    """Huge, non-finite and malformed numbers; readings of the wrong type; odd telemetryData."""
    doc = draw(alerts())
    name = draw(st.sampled_from(("currentValue", "threshold")))
    path = f"telemetryData.{name}"
    kind = draw(
        st.sampled_from(("non_finite", "literal", "huge", "float", "tiny", "type", "shape"))
    )
    value: Any
    if kind == "non_finite":
        value = Raw(draw(st.sampled_from(NON_FINITE)))
        expect = bad(f"{path} = {value.data!r}", WHOLE_BODY, field(path))
    elif kind == "literal":
        value = Raw(draw(st.sampled_from(BAD_LITERALS)))
        expect = bad(f"{path} = {value.data!r}", WHOLE_BODY, field(path))
    elif kind == "huge":
        value = draw(st.sampled_from(HUGE_INTEGERS))
        expect = either(f"{path} = {str(value)[:24]}", WHOLE_BODY, field(path))
    elif kind == "float":
        value = draw(st.floats(allow_nan=False, allow_infinity=False))
        expect = either(f"{path} = {value!r}", field(path))
    elif kind == "tiny":
        value = draw(st.sampled_from([0, -0.0, 5e-324, -5e-324, 1e-300, Raw(b"-0"), Raw(b"1E2")]))
        expect = ok(f"{path} = {value!r}")
    elif kind == "type":
        value = draw(st.sampled_from(["89.5", "", "NaN", True, None, [], {}, [1.0], {"v": 1}]))
        expect = bad(f"{path} = {value!r}", field(path, "invalid_field", "missing_field"))
    else:
        shape: Any = draw(st.sampled_from([None, [], [1, 2], "hot", 89.5, True, {}]))
        return make_case(
            draw,
            _with(doc, "telemetryData", shape),
            bad(
                f"telemetryData = {shape!r}",
                field("telemetryData", "invalid_field", "missing_field"),
                field("telemetryData.currentValue", "missing_field"),
            ),
        )
    return make_case(draw, _telemetry(doc, name, value), expect)


@st.composite
def text_cases(draw: st.DrawFn) -> Case:
    """unit, alertType, severity and status: character classes, lengths, types, values."""
    doc = draw(alerts())
    name = draw(st.sampled_from(("unit", "alertType", "severity", "status")))
    if name == "status":
        value: Any = draw(
            st.sampled_from(["firing", "resolved", "FIRING", "", "maybe", "\u202efiring", 1, None])
        )
        if value in ("firing", "resolved"):
            return make_case(draw, _with(doc, name, value), ok(f"status {value}"))
        expect = bad(f"status {value!r}", field("status", "invalid_field", "missing_field"))
        return make_case(draw, _with(doc, name, value), expect)
    tokens = draw(st.sampled_from((STRUCTURAL, CONTROL, BIDI, OTHER, ["x" * 70])))
    around = st.text(SAFE, max_size=6)
    text = (
        draw(around) + "".join(draw(st.lists(st.sampled_from(tokens), max_size=3))) + draw(around)
    )
    if name == "unit":
        expect = text_verdict(
            "telemetryData.unit",
            text,
            max_len=32,
            allowed=PRINTABLE_ASCII + " °²³µ",
            label=f"unit {text!r}",
        )
        return make_case(draw, _telemetry(doc, "unit", text), expect)
    expect = text_verdict(
        name,
        text,
        max_len=64 if name == "alertType" else 32,
        allowed=SAFE,
        label=f"{name} {text!r}",
    )
    if not text:
        expect = (
            either(f"{name} empty", field(name))
            if name == "severity"
            else bad(f"{name} empty", field(name, "invalid_field", "missing_field"))
        )
    return make_case(draw, _with(doc, name, text), expect)


@st.composite
def field_cases(draw: st.DrawFn) -> Case:
    """Missing fields, extra members (any name, any JSON value), members in any order."""
    doc = draw(alerts())
    if draw(st.booleans()):
        gone = draw(st.sampled_from((*REQUIRED, "currentValue", "threshold", "unit")))
        if gone in REQUIRED:
            doc = {k: v for k, v in doc.items() if k != gone}
            named = field(gone, "missing_field")
        else:
            doc = {
                **doc,
                "telemetryData": {k: v for k, v in doc["telemetryData"].items() if k != gone},
            }
            named = field(f"telemetryData.{gone}", "missing_field")
        return make_case(draw, doc, bad(f"{gone} missing", named))
    values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**53), 2**53)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=8,
    )
    known = {*REQUIRED, "status", "severity", "currentValue", "threshold", "unit"}
    names = st.one_of(
        st.sampled_from(["__proto__", "constructor", "", "telemetryData.currentValue", "$where"]),
        st.text(max_size=30),
    ).filter(lambda n: n not in known)
    extra = draw(st.dictionaries(names, values, min_size=1, max_size=4))
    if draw(st.booleans()):
        doc = {**doc, "telemetryData": {**doc["telemetryData"], **extra}}
    else:
        doc = {**doc, **extra}
    # Stored with the alert and shown to agents: the contract does not say whether free text
    # with control or bidi characters there is refused.
    risky = any(c in REFUSED_CHARS for s in _strings(extra) for c in s)
    expect = either("extra members", field(None)) if risky else ok("extra members")
    return make_case(draw, doc, expect)


def _strings(value: Any) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@st.composite
def nesting_cases(draw: st.DrawFn, limits: Limits) -> Case:
    """Arrays and objects nested at any depth up to orjson's limit, in an extra field or telemetry.

    The document is level 1, an extra member's value level 2, a telemetry member's level 3.
    """
    doc = draw(alerts())
    where = draw(st.sampled_from(("extra", "telemetry", "reading")))
    kind = draw(st.sampled_from(("array", "object", "mixed")))
    start = {"extra": 2, "telemetry": 3, "reading": 3}[where]
    boundaries = [limits.max_depth + d for d in (-1, 0, 1, 2)] + [254, 255, 256, 1023, 1024, 1025]
    depth = draw(st.one_of(st.integers(start, ORJSON_DEPTH + 1), st.sampled_from(boundaries)))
    depth = max(depth, start)
    value = nested(kind, depth - start + 1)
    if where == "extra":
        doc = _with(doc, "deep", value)
    elif where == "telemetry":
        doc = _telemetry(doc, "history", value)
    else:
        doc = _telemetry(doc, "currentValue", value)
    label = f"{kind} nested to level {depth} in {where}"
    if where == "reading" and depth <= limits.max_depth:
        expect = bad(label, field("telemetryData.currentValue"), field(None, "invalid_field"))
    else:
        expect = depth_verdict(depth, limits, label)
    return make_case(draw, doc, expect)


@st.composite
def encoding_cases(draw: st.DrawFn) -> Case:  # noqa: C901, PLR0911, PLR0912
    """Invalid UTF-8, NUL, lone surrogates, BOM, repeated keys, truncation, not an object."""
    doc = draw(alerts())
    kind = draw(
        st.sampled_from(
            (
                "utf8",
                "surrogate",
                "pair",
                "nul",
                "raw_control",
                "bom",
                "space",
                "trailing",
                "repeat",
                "truncated",
                "not_object",
                "utf16",
            )
        )
    )
    name = draw(st.sampled_from((*ID_FIELDS, "alertType", "unit", "deep")))
    path = "telemetryData.unit" if name == "unit" else name

    def put(value: Any) -> dict[str, Any]:
        return _telemetry(doc, "unit", value) if name == "unit" else _with(doc, name, value)

    head = draw(st.text(SAFE, min_size=1, max_size=4)).encode()
    if kind == "utf8":
        junk = draw(st.sampled_from(INVALID_UTF8))
        return make_case(
            draw,
            put(Raw(b'"' + head + junk + b'"')),
            bad(f"{name}: bytes {junk!r}", WHOLE_BODY, field(path)),
        )
    if kind == "surrogate":
        junk = draw(st.sampled_from(LONE_SURROGATES))
        return make_case(
            draw,
            put(Raw(b'"' + head + junk + b'"')),
            bad(f"{name}: escape {junk.decode()}", WHOLE_BODY, field(path)),
        )
    if kind == "pair":  # a valid surrogate pair escape: U+1F600
        value = Raw(b'"' + head + b'\\ud83d\\ude00"')
        expect = (
            ok(f"{name}: escaped emoji")
            if name in ("unit", "deep")
            else either(f"{name}: escaped emoji", field(path))
        )
        return make_case(draw, put(value), expect)
    if kind == "nul":
        escaped = draw(st.booleans())
        value = Raw(b'"' + head + (b"\\u0000" if escaped else b"\x00") + b'"')
        if not escaped:
            expect = bad(f"{name}: raw NUL byte", WHOLE_BODY, field(path))
        elif name == "deep":
            expect = either(f"{name}: escaped NUL", field(path))
        else:
            expect = bad(f"{name}: escaped NUL", field(path))
        return make_case(draw, put(value), expect)
    if kind == "raw_control":
        byte = draw(st.sampled_from([b"\x01", b"\n", b"\r", b"\t", b"\x1f"]))
        return make_case(
            draw,
            put(Raw(b'"' + head + byte + b'"')),
            bad(f"{name}: raw {byte!r}", WHOLE_BODY, field(path)),
        )
    if kind == "bom":
        return make_case(draw, doc, either("a UTF-8 BOM first", WHOLE_BODY), before=b"\xef\xbb\xbf")
    if kind == "space":
        ws = st.text(" \t\r\n", min_size=1, max_size=4).map(str.encode)
        return make_case(draw, doc, ok("whitespace around"), before=draw(ws), after=draw(ws))
    if kind == "trailing":
        tail = draw(st.sampled_from([b"x", b"}", b",", b"\x00", b"{}", b"[]", b"null", b"\xff"]))
        return make_case(draw, doc, bad(f"trailing {tail!r}", WHOLE_BODY), after=tail)
    if kind == "repeat":
        return _repeated(draw, doc)
    if kind == "truncated":
        drop = draw(st.integers(1, 60))
        return make_case(draw, doc, bad(f"last {drop} bytes cut", WHOLE_BODY), drop=drop)
    if kind == "utf16":
        body = encode(doc).replace(_SENTINEL_BYTES, b"x").decode().encode("utf-16")
        return Case((), bad("UTF-16", WHOLE_BODY), whole=body)
    whole = draw(
        st.one_of(
            st.sampled_from(
                [
                    b"",
                    b" ",
                    b"null",
                    b"[]",
                    b"[{}]",
                    b'"x"',
                    b"1",
                    b"true",
                    b"\x00",
                    b"\xef\xbb\xbf",
                ]
            ),
            st.binary(max_size=40),
        )
    )
    try:
        parsed = orjson.loads(whole)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        return Case((), bad(f"body {whole!r}", field(None, *REJECT_REASONS)), whole=whole)
    return Case((), bad(f"body {whole!r}", WHOLE_BODY), whole=whole)


def _repeated(draw: st.DrawFn, doc: dict[str, Any]) -> Case:
    """A key given twice: orjson keeps the last value; it decides the verdict."""
    name = draw(st.sampled_from((*ID_FIELDS, "alertType", "timestamp")))
    good = doc[name]
    refused = draw(st.sampled_from(["\u202eevil", "a\x00b", "", 7]))
    other: Any = f"{good}-other" if name != "timestamp" else zulu(time.time() - 60)
    first, last = draw(
        st.sampled_from([(good, other), (other, good), (refused, good), (good, refused)])
    )
    members = [(k, v) for k, v in doc.items() if k != name]
    at = draw(st.integers(0, len(members)))
    at2 = draw(st.integers(at, len(members)))
    members.insert(at, (name, first))
    members.insert(at2 + 1, (name, last))
    label = f"{name} twice: {first!r} then {last!r}"
    if last is refused:
        expect = bad(label, field(None, *REJECT_REASONS))
    else:
        expect = either(label, field(None, *REJECT_REASONS))
    return Case(tuple(members), expect)


@st.composite
def size_cases(draw: st.DrawFn, limits: Limits) -> Case:
    """Payloads of exactly the limit, one byte over, and far over (1 MB)."""
    doc = draw(alerts())
    size = draw(
        st.sampled_from(
            [
                limits.max_body - 1,
                limits.max_body,
                limits.max_body + 1,
                2 * limits.max_body,
                1 << 20,
            ]
        )
    )
    where = draw(st.sampled_from(("top", "telemetry")))
    doc = _with(doc, "pad", Pad()) if where == "top" else _telemetry(doc, "pad", Pad())
    if size > limits.max_body:
        expect = bad(f"{size} bytes", field("", "too_large"))
    else:
        expect = ok(f"{size} bytes")
    return make_case(draw, doc, expect, size=size)


@st.composite
def valid_cases(draw: st.DrawFn) -> Case:
    """Valid alerts, members in any order."""
    return make_case(draw, draw(alerts()), ok("valid"))


def categories(limits: Limits) -> dict[str, st.SearchStrategy[Case]]:
    """The corpus by category: each is run, and checked, as its own batch."""
    return {
        "ids": id_cases(limits),
        "timestamps": timestamp_cases(limits),
        "numbers": number_cases(),
        "text": text_cases(),
        "fields": st.one_of(field_cases(), valid_cases()),
        "nesting": nesting_cases(limits),
        "encoding": encoding_cases(),
        "sizes": size_cases(limits),
    }


def depth_verdict(depth: int, limits: Limits, label: str) -> Expect:
    """Arrays and objects nested to `depth` levels (the document is level 1)."""
    if depth > ORJSON_DEPTH:
        return bad(label, field("", "invalid_json", "invalid_field", "too_large"))
    if depth > limits.max_depth:
        return bad(label, field(None, "invalid_field", "too_large"))
    return ok(label)


def deep_alert(base: dict[str, Any], kind: str, depth: int, where: str) -> dict[str, Any]:
    """`base` with `kind` nested to document level `depth` in an extra member ('extra') or in
    telemetryData ('telemetry')."""
    if where == "extra":
        return _with(base, "deep", nested(kind, depth - 1))
    return _telemetry(base, "history", nested(kind, depth - 2))


def _named_base() -> dict[str, Any]:
    return {
        "idempotencyKey": f"named-{SENTINEL}",
        "sensorId": "adv-named",
        "customerId": "ADV-named",
        "alertType": "temp_high",
        "timestamp": zulu(time.time() - 30),
        "telemetryData": {"currentValue": 89.5, "threshold": 85.0, "unit": "celsius"},
    }


def _case(doc: dict[str, Any], expect: Expect, **kw: Any) -> Case:
    return Case(tuple(doc.items()), expect, **kw)


def _named_ids(base: dict[str, Any], limits: Limits) -> list[Case]:
    out = []
    for name in ID_FIELDS:
        for token in [*STRUCTURAL, *CONTROL, *BIDI, *OTHER, " lead", "trail "]:
            text = f"a{token}b" if name != "idempotencyKey" else f"a{token}b{SENTINEL}"
            out.append(_case(_with(base, name, text), id_verdict(name, text, limits, repr(text))))
        long = "L" * (limits.max_string + 1)
        out.append(_case(_with(base, name, long), bad(f"{name} {len(long)} long", field(name))))
        out += [  # the whole id, a path segment of its own in URLs
            _case(_with(base, name, whole), ok(f"{name} {whole!r}"))
            for whole in (".", "..", "%2e%2e", "%", "{", "}:", "/")
        ]
    out.append(_case(_with(base, "sensorId", "Q}:cool:T"), ok("sensorId Q}:cool:T")))
    out.append(_case(_with(base, "customerId", "SECK}:readings:Q"), ok("customerId SECK}:...")))
    return out


def _named_timestamps(base: dict[str, Any], limits: Limits) -> list[Case]:
    naive = zulu(time.time())[:-1]
    old = zulu(time.time() - limits.max_age - 3600)
    nul = [zulu(time.time()) + "\x00", naive + "\x00Z"]  # CPython's fromisoformat stops at NUL
    values = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", naive, old, *nul)
    return [
        _case(_with(base, "timestamp", value), bad(f"timestamp {value!r}", field("timestamp")))
        for value in values
    ]


def _named_numbers(base: dict[str, Any], _limits: Limits) -> list[Case]:
    reading = field("telemetryData.currentValue")
    out = [
        _case(
            _telemetry(base, "currentValue", Raw(literal)),
            bad(f"currentValue {literal.decode()}", WHOLE_BODY, reading),
        )
        for literal in (b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity")
    ]
    out += [
        _case(
            _telemetry(base, "currentValue", number),
            either(f"currentValue {number}", WHOLE_BODY, reading),
        )
        for number in (2**64, 2**70)
    ]
    return out


def _named_encoding(base: dict[str, Any], _limits: Limits) -> list[Case]:
    sensor = field("sensorId")
    return [
        _case(base, either("BOM", WHOLE_BODY), before=b"\xef\xbb\xbf"),
        _case(
            _with(base, "sensorId", Raw(b'"a\xffb"')), bad("sensorId a\\xffb", WHOLE_BODY, sensor)
        ),
        _case(
            _with(base, "sensorId", Raw(b'"a\\ud800b"')),
            bad("sensorId \\ud800", WHOLE_BODY, sensor),
        ),
        _case(_with(base, "sensorId", "a\x00b"), bad("sensorId with NUL", sensor)),
        Case(
            (*base.items(), ("sensorId", "adv-second")),
            either("sensorId twice", field(None, *REJECT_REASONS)),
        ),
    ]


def _named_nesting(base: dict[str, Any], limits: Limits) -> list[Case]:
    depths = sorted({limits.max_depth, limits.max_depth + 1, 255, 1024, 1025})
    return [
        _case(
            deep_alert(base, kind, depth, where),
            depth_verdict(depth, limits, f"{kind} nested to level {depth} in {where}"),
        )
        for depth in depths
        for kind in ("array", "object")
        for where in ("extra", "telemetry")
    ]


def _named_sizes(base: dict[str, Any], limits: Limits) -> list[Case]:
    out = []
    for size in (limits.max_body, limits.max_body + 1, 1 << 20):
        over = size > limits.max_body
        expect = bad(f"{size} bytes", field("", "too_large")) if over else ok(f"{size} bytes")
        out.append(_case(_with(base, "pad", Pad()), expect, size=size))
    junks = (b"[" * (1 << 20), bytes(range(256)) * 4096, b"\xef\xbb\xbf" * 349_526)
    out += [
        Case((), bad(f"{len(j)} bytes of {j[:3]!r}", field("", "too_large")), whole=j)
        for j in junks
    ]
    return out


_NAMED = {
    "ids": _named_ids,
    "timestamps": _named_timestamps,
    "numbers": _named_numbers,
    "encoding": _named_encoding,
    "nesting": _named_nesting,
    "sizes": _named_sizes,
}


def named_cases(category: str, limits: Limits) -> list[Case]:
    """The cases issue #16 names, sent in every run before the generated ones."""
    named = _NAMED.get(category)
    return named(_named_base(), limits) if named else []
