"""CXone Studio script parameters: values joined with `|`, each escaped so none can add a field.

CXone splits a script start's `parameters` at every `|` into the script's p1..pN itself, before
the script runs: a `|` inside a value (a sensorId may hold one: ids are any printable ASCII)
would shift every later field. So no value may carry a `|`: each is percent-escaped — `%` as
`%25`, then `|` as `%7C` — and the Studio script undoes it on each pN with two literal
replacements, `%7C` to `|` first, then `%25` to `%` (docs/cxone.md, "2. The Studio script").
A value without `%` or `|` is sent as it is, so a script that does not unescape still reads
every ordinary id.

Escaping rather than refusing: an id with a `|` is a valid id everywhere else in tripline
(records, keys, Genesys, Twilio), so refusing it would leave that sensor with no call at all on
CXone — a lost call for a character only this one transport cannot carry.
"""

from __future__ import annotations

from collections.abc import Iterable

SEPARATOR = "|"


def escape(value: str) -> str:
    """`value` with `%` as `%25` and `|` as `%7C`: it holds no `|`, and `unescape` restores it.

    Args:
        value: Any text.

    Returns:
        The text to send as one Studio parameter.
    """
    return value.replace("%", "%25").replace(SEPARATOR, "%7C")


def unescape(field: str) -> str:
    """What the Studio script does to one pN: `%7C` to `|`, then `%25` to `%` — in that order.

    In an escaped value every `%` starts `%25` or `%7C`, so each replacement meets only its own
    escapes; the other order would turn an original `%7C` (sent as `%257C`) into `|`.

    Args:
        field: One pN as CXone hands it to the script.

    Returns:
        The value tripline escaped.
    """
    return field.replace("%7C", SEPARATOR).replace("%25", "%")


def join(values: Iterable[str]) -> str:
    """The `parameters` string of a script start: the values escaped, then joined with `|`.

    Args:
        values: p1..pN in order.

    Returns:
        `p1|p2|…`, with exactly one `|` between two values and none inside one.
    """
    return SEPARATOR.join(escape(v) for v in values)


def split(parameters: str) -> list[str]:
    """The values a script reads: CXone's split at every `|`, then `unescape` on each pN.

    Args:
        parameters: The `parameters` string of a script start.

    Returns:
        p1..pN, unescaped.
    """
    return [unescape(p) for p in parameters.split(SEPARATOR)]
