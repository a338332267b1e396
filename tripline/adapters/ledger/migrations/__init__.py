"""The ledger's PostgreSQL schema, one numbered .sql file per version."""
