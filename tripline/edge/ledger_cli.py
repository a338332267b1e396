"""`tripline ledger`: migrate the PostgreSQL schema, export a period for an auditor, erase."""

from __future__ import annotations

import argparse
import csv
import getpass
import io
import socket
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from tripline.conf import schema

if TYPE_CHECKING:
    from tripline.adapters.ledger.actions import Author


def add_parser(sub: Any) -> None:  # noqa: ANN401 - argparse's private subparsers type
    """Add `ledger migrate|export|erase` to the command line."""
    ledger = sub.add_parser("ledger", help="the compliance ledger: migrate, export, erase")
    actions = ledger.add_subparsers(dest="ledger_action", required=True)
    migrate = actions.add_parser("migrate", help="apply the PostgreSQL schema's new versions")
    migrate.add_argument("--config", type=Path)
    export = actions.add_parser("export", help="every entry of a period, oldest first")
    export.add_argument("--from", dest="start", required=True, help="date or ISO time, inclusive")
    export.add_argument("--to", dest="end", required=True, help="date or ISO time, exclusive")
    export.add_argument("--format", choices=("ndjson", "csv"), default="ndjson")
    export.add_argument("--output", type=Path, help="file to write (default: standard output)")
    export.add_argument("--config", type=Path)
    erase = actions.add_parser(
        "erase", help="delete a customer's or a number's entries (right to erasure)"
    )
    who = erase.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer", help="customerId")
    who.add_argument("--phone", help="phone number (looked up by its keyed hash)")
    erase.add_argument("--by", help="who (default: the login name)")
    erase.add_argument("--why", required=True, help="why: the request being honoured")
    erase.add_argument("--config", type=Path)


def run(args: argparse.Namespace) -> int:
    """Run `tripline ledger …`."""
    try:
        config = schema.load(args.config)
    except schema.ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        return 1
    handlers = {"migrate": _migrate, "export": _export, "erase": _erase}
    result: int = handlers[args.ledger_action](args, config)
    return result


def cli_author(by: str | None, why: str) -> Author:
    """The ledger's author of a command: --by (or the login name), this host, the reason."""
    from tripline.adapters.ledger.actions import Author  # noqa: PLC0415

    try:
        login = getpass.getuser()
    except OSError:
        login = "?"
    return Author(who=by or login, origin=f"cli:{socket.gethostname()}", why=why)


def _migrate(_args: argparse.Namespace, config: schema.Config) -> int:
    import psycopg  # noqa: PLC0415

    from tripline.adapters.ledger import postgres  # noqa: PLC0415

    if not config.ledger.url:
        print("ledger migrate: no [ledger] url (TRIPLINE__LEDGER__URL) is set", file=sys.stderr)
        return 2
    try:
        applied = postgres.migrate(config.ledger.url)
    except psycopg.Error as exc:
        print(f"ledger migrate failed: {exc}", file=sys.stderr)
        return 1
    for name in applied:
        print(f"applied {name}")
    if not applied:
        print("the schema is up to date")
    return 0


def _export(args: argparse.Namespace, config: schema.Config) -> int:
    from tripline.adapters.ledger.query import parse_instant  # noqa: PLC0415
    from tripline.service.ledger import open_store  # noqa: PLC0415

    try:
        start, end = parse_instant(args.start), parse_instant(args.end)
    except ValueError as exc:
        print(f"ledger export: {exc}", file=sys.stderr)
        return 2
    store = open_store(config.ledger)
    out: IO[bytes] = args.output.open("wb") if args.output else sys.stdout.buffer
    try:
        count = write_export(store.export(start, end), out, args.format)
    finally:
        store.close()
        if args.output:
            out.close()
    print(f"exported {count} entries of [{start}, {end})", file=sys.stderr)
    return 0


def write_export(entries: Any, out: IO[bytes], fmt: str) -> int:  # noqa: ANN401 - an iterator
    """Write entries as NDJSON or CSV (the same entries always give the same bytes)."""
    from tripline.adapters.ledger.entry import ENTRY_FIELDS, export_line  # noqa: PLC0415

    count = 0
    if fmt == "ndjson":
        for entry in entries:
            out.write(export_line(entry))
            count += 1
        return count
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(ENTRY_FIELDS)
    for entry in entries:
        writer.writerow([_cell(entry.get(name)) for name in ENTRY_FIELDS])
        count += 1
    text.detach()  # leave `out` open for its owner
    return count


def _cell(value: Any) -> str:  # noqa: ANN401
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return str(value)


def _erase(args: argparse.Namespace, config: schema.Config) -> int:
    import redis  # noqa: PLC0415

    from tripline.adapters.ledger.actions import record_action  # noqa: PLC0415
    from tripline.adapters.ledger.entry import hasher_for  # noqa: PLC0415
    from tripline.adapters.redis_clients import sync_redis  # noqa: PLC0415
    from tripline.adapters.store import Keys  # noqa: PLC0415
    from tripline.service.ledger import open_store  # noqa: PLC0415

    hasher = hasher_for(config.ledger.phone_hash_key, config.redis.key_prefix)
    phone_hash = hasher.digest(args.phone) if args.phone else ""
    store = open_store(config.ledger)
    try:
        gone = store.erase(customer_id=args.customer or "", phone_hash=phone_hash)
    finally:
        store.close()
    # The erasure is itself evidence, without what it erased: the customer's id and the
    # number appear only as keyed hashes.
    subject = {
        "customerIdHash": hasher.digest(args.customer) if args.customer else None,
        "phoneHash": phone_hash or None,
        "entries": gone,
    }
    client = sync_redis(config.redis)
    try:
        keys = Keys(config.redis.key_prefix, ledger=config.ledger.enabled)
        author = cli_author(args.by, args.why)
        record_action(
            client, keys, author, action="ledger_erased", now=time.time(), subject=subject
        )
    except redis.RedisError as exc:
        print(f"erased {gone} entries, but the erasure is not recorded: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"erased {gone} entries")
    return 0
