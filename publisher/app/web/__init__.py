"""The daemon's web server: `app` (the Starlette app: /healthz and the served feeds), `dashboard` (the
page, `/api/lag`, `/metrics`, retry, token login), `metrics` (what `/metrics` says) and `context`
(what the handlers may use, made once by the daemon). Templates are jinja2 in `templates/`; no
JavaScript and no build step.
"""
