"""The doors: `daemon` (makes the I/O objects once, wires intake, review, dispatch, lag and the web
server, handles signals), `intake_process` (intake in a process of its own while the daemon runs),
`reports` (the lag report built in a process of its own for the web doors and the alerter), `cli/`
(the `publisher` command) and `web/` (the dashboard, `/api/lag`, `/metrics`, the served feeds, the
review desk). The only units that may import everything else; nothing imports them.
These `__init__` files stay empty of imports, so that `publisher lag` starts fast.
"""
