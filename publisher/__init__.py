"""Publishing daemon: queue folder → review → every channel exactly once → lag report.

The folders follow the data flow: `intake/` (the queue folder and the item file) → `store/` (every
SQL statement) → `review/` (sign-off chains, the confidentiality screen) → `dispatch/` (the outbox
and its per-channel workers, which call the adapters in the top-level `channels/`) → `lag/` (the
report, working days, alerts). `app/` holds the doors: the daemon, the CLI and the web server.
`config/` reads config.yaml; `sandbox/` holds the loopback stand-ins of the real services (demo and
tests only). The leaf modules here (`model`, `states`, `errors`, `clock`, `units`, `i18n`, `logs`) import no
other part of the project, and every part may import them. This file stays free of imports, so
that `publisher lag` starts fast.
"""

__version__ = "0.1.0"
