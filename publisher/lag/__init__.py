"""The lag report, read from the store at an instant the caller gives: `report` (late deliveries,
freshness against the inspection thresholds, the legal deadline), `workdays` (China's working days),
`json_form` (the stable JSON of docs/LAG_JSON.md) and `alerts` (one message when a condition opens,
one when it recovers). May import the core's leaf modules, config and store; it only reads what
dispatch wrote and never imports dispatch, review or the doors in app/.
"""
