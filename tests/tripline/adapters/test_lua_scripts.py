"""Every Lua script names its keys in KEYS only, and the keys it is given share one slot.

A Redis Cluster routes a script by its KEYS and refuses keys of two slots (CROSSSLOT); a key
name built inside the script from its arguments is not declared at all, and would go to
whichever node the declared keys chose. So: every key a script touches is KEYS[n] (checked
here on the source of every script in the package), and the key builders give the KEYS of
each call site one hash tag whatever the ids (checked here with hostile ids; which keys each
call really sends, for every script, with a service running: tests/integration/
test_scripts_one_slot.py).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

import tripline
from tripline.adapters.attempts import follow_key
from tripline.adapters.store import Keys

KEYLESS = frozenset({"TIME"})
"""Commands a script may call without a key."""


def scripts() -> dict[str, str]:
    """Every Lua script in tripline's modules (a string constant calling redis.call), by name.

    A piece of Lua that is part of another constant (a shared function) is not a script of
    its own: it is checked, and run, as part of the scripts that include it.
    """
    found: dict[str, str] = {}
    for info in pkgutil.walk_packages(tripline.__path__, "tripline."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, str) and "redis.call(" in value:
                assert found.setdefault(name, value) == value, f"two scripts named {name}"
    return {
        name: source
        for name, source in found.items()
        if not any(_part_of(source, other) for other in found.values() if other is not source)
    }


def _part_of(piece: str, script: str) -> bool:
    """Whether `piece` is in `script` as written, or as a template formatted into it.

    A template (str.format fields such as {entry}, Lua's own braces doubled) is found by its
    literal parts, in order, with anything where its fields are.
    """
    if piece in script:
        return True
    try:
        parts = list(string.Formatter().parse(piece))
    except ValueError:  # Lua's braces, single: not a template
        return False
    fields = [field for _, field, _, _ in parts if field is not None]
    if not fields or not all(field.isidentifier() for field in fields):
        return False
    pattern = "".join(
        re.escape(literal) + ("(?s:.*?)" if field is not None else "")
        for literal, field, _, _ in parts
    )
    return re.search(pattern, script) is not None


def calls(source: str) -> list[tuple[str, list[str]]]:
    """Each redis.call / redis.pcall of a script: (command, its other arguments as written)."""
    out = []
    for match in re.finditer(r"redis\.p?call\(", source):
        args = _arguments(source, match.end())
        command = args[0].strip().strip("'\"").upper()
        out.append((command, [a.strip() for a in args[1:]]))
    return out


def _arguments(source: str, start: int) -> list[str]:
    """The top-level comma-separated arguments from `start` to the matching parenthesis."""
    args, depth, quote, current = [], 0, "", ""
    for char in source[start:]:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "({[":
            depth += 1
        elif char in ")}]":
            if depth == 0:
                args.append(current)
                return args
            depth -= 1
        elif char == "," and depth == 0:
            args.append(current)
            current = ""
            continue
        current += char
    raise AssertionError(f"unbalanced call in {source[start - 12 : start + 40]!r}")


def test_the_package_s_scripts_are_all_found() -> None:
    found = scripts()
    assert {
        "ACCEPT_LUA",
        "TRANSITION_LUA",
        "COOLDOWN_LUA",
        "ANNOTATE_LUA",
        "CLAIM_TASK_LUA",
        "CAP_LUA",
        "GCRA_LUA",
        "GROUP_LUA",
        "CANCEL_LUA",
        "READING_LUA",
        "REACH_LUA",
        "PUSH_LUA",
        "ACQUIRE_LUA",
        "RENEW_LUA",
        "CLAIM_LUA",
        "RELEASE_LUA",
    } <= set(found)
    assert "_CLOCK" not in found  # a function the lease scripts share, not a script
    assert "LEDGER_APPEND" not in found  # a template formatted into the record scripts


def test_a_template_formatted_into_a_script_is_part_of_it() -> None:
    template = "if KEYS[3] then\n  local a = {{'x', {entry}}}\nend"
    script = "redis.call('HSET', KEYS[1], 'a', 1)\n" + template.format(entry="ARGV[2]")
    assert _part_of(template, script)
    assert not _part_of(template, "redis.call('HSET', KEYS[1], 'a', 1)")
    assert not _part_of("{1, tonumber(ARGV[2])}", "return {1, tonumber(ARGV[3])}")


@pytest.mark.parametrize("name", sorted(scripts()))
def test_a_script_touches_only_keys_it_declares(name: str) -> None:
    source = scripts()[name]
    found = calls(source)
    assert found, name
    for command, args in found:
        if command in KEYLESS:
            continue
        assert args, f"{name}: {command} without a key"
        # The key is KEYS[n] as such (n a number or a loop's index): never ARGV, never a
        # name put together with '..'.
        assert re.fullmatch(r"KEYS\[(\d+|[a-z_]+)\]", args[0]), f"{name}: {command} {args[0]}"
    assert "KEYS[" in source or all(c in KEYLESS for c, _ in found)


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("redis.call('GET', 'tl:' .. ARGV[1])", "'tl:' .. ARGV[1]"),
        ("redis.call('SET', ARGV[1], 1)", "ARGV[1]"),
        ("redis.pcall('DEL', KEYS[1] .. ':x')", "KEYS[1] .. ':x'"),
    ],
)
def test_the_check_sees_a_key_built_inside_lua(source: str, bad: str) -> None:
    ((_, args),) = calls(source)
    assert args[0] == bad
    assert not re.fullmatch(r"KEYS\[(\d+|[a-z_]+)\]", args[0])


def test_calls_reads_nested_arguments() -> None:
    source = "redis.call('HSET', KEYS[1], unpack(ARGV, 3)); redis.call('TIME')"
    assert calls(source) == [("HSET", ["KEYS[1]", "unpack(ARGV, 3)"]), ("TIME", [])]


# --- the keys each call site passes, built by the real key builders --------------------------

# Ids made of the characters that shape keys and tags, and of anything else.
_ID = st.text(alphabet=st.sampled_from("ab%{}:-7 "), min_size=1, max_size=12) | st.text(
    min_size=1, max_size=8
)


def _one_slot(*keys: str) -> bool:
    return len({key_slot(k.encode()) for k in keys}) == 1


@given(key=_ID, customer=_ID, sensor=_ID, lane=_ID, reference=_ID, phone=_ID, instance=_ID)
def test_the_keys_of_each_script_call_share_a_slot_whatever_the_ids(
    *, key: str, customer: str, sensor: str, lane: str, reference: str, phone: str, instance: str
) -> None:
    keys = Keys("tl")
    # ACCEPT, TRANSITION, ANNOTATE, REACH: an alert's record and its history.
    assert _one_slot(keys.record(key), keys.history(key))
    # CANCEL: the customer's group counts, its open group, the sensor's cooldown;
    # GROUP: the group and its counts.
    assert _one_slot(
        keys.group_counts(customer), keys.group(customer, lane), keys.cooldown(customer, sensor)
    )
    # One key each (COOLDOWN, READING, CAP, CLAIM_TASK, PUSH, GCRA): one slot by themselves;
    # and no id can move another id's key to its slot by the tag.
    assert keys.customer_calls(customer).count("{") == 1
    assert keys.number_calls(phone).count("{") == 1
    assert keys.siblings(reference).count("{") == keys.context(reference).count("{") == 1
    assert follow_key(keys, instance).count("{") == 1
