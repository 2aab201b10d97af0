"""The store: the only place that speaks SQL. `schema` (the tables, indexes and CHECK constraints,
SQLAlchemy Core), `migrations/` (alembic; an upgrade never drops data), `engine` (the engine and
its transactions), `db` (`Store`, assembled from `revisions`, the intake and review writes, and
`deliveries`, the outbox rows with one guarded method per state transition; `accounts`, the reviewers'
accounts, web sessions and notices), `reads` (the statements
of the lag report, the dashboard and /metrics), `alert_log` (the alerter's rows) and `changes` (how
a daemon hears other processes' writes: NOTIFY or SQLite's `data_version`). May import the core's
leaf modules (model, states, errors, clock, units) and nothing above it: intake, review, dispatch
and lag call the store, never the other way round.
"""
