-- The ledger: one row per decision, call attempt, task and operator action.
-- (source, stream_id) is the entry's identity: a replay of a stream message inserts nothing.
CREATE TABLE ledger_entries (
    id              BIGSERIAL PRIMARY KEY,
    source          TEXT        NOT NULL,
    stream_id       TEXT        NOT NULL,
    kind            TEXT        NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    idempotency_key TEXT,
    customer_id     TEXT,
    sensor_id       TEXT,
    alert_type      TEXT,
    priority        TEXT,
    reference_id    TEXT,
    event           TEXT,
    outcome         TEXT,
    reason          TEXT,
    detail          TEXT,
    phone_hash      TEXT,
    phone_masked    TEXT,
    backend         TEXT,
    call_id         TEXT,
    task_id         TEXT,
    attempt         INTEGER,
    actor           TEXT,
    origin          TEXT,
    evidence        JSONB       NOT NULL DEFAULT '{}'::jsonb,
    written_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT ledger_entries_identity UNIQUE (source, stream_id)
);

-- The questions it answers: a customer's entries, a number's, one alert's, a period's.
CREATE INDEX ledger_entries_customer ON ledger_entries (customer_id, at);
CREATE INDEX ledger_entries_phone ON ledger_entries (phone_hash, at) WHERE phone_hash IS NOT NULL;
CREATE INDEX ledger_entries_key ON ledger_entries (idempotency_key, at);
CREATE INDEX ledger_entries_at ON ledger_entries (at, id);
