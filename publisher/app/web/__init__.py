"""The daemon's web server: `app` (the Starlette app: /healthz, the served feeds, the Host allow-list),
`dashboard` (the page, `/api/lag`, `/metrics`, retry), `desk` (the review desk: my queue, the item page,
the reviewers' actions; `desk_views` renders an item per channel, `desk_words` its fixed words), `auth`
(login, logout, sessions), `security` (signed cookies, CSRF tokens, the login throttle), `metrics` (what
`/metrics` says) and `context` (what the handlers may use, made once by the daemon). Templates are
jinja2 in `templates/`; no JavaScript and no build step.
"""
