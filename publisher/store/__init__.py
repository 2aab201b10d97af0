"""The store: the only place that speaks SQL. `schema` (the tables and indexes, SQLAlchemy Core),
`migrations/` (alembic; an upgrade never drops data), `db` (the engine, transactions and every
statement the core runs), `reads` (the statements of the lag report, the dashboard and /metrics),
`alert_log` (the alerter's rows), `changes` (how a daemon hears other processes' writes: NOTIFY or SQLite's
`data_version`). May import the core's leaf modules (model, errors, clock, units) and nothing
above it: intake, review, dispatch and lag call the store, never the other way round.
"""
