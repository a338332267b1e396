"""The compliance ledger's stores: PostgreSQL, or rotated NDJSON files on an edge gateway."""
