"""config.yaml: the file (read, YAML, `${ENV}` secrets: `file`, light enough for `publisher lag`'s fast
start) and its validated pydantic model (`settings`: channels, categories, roles, durations, with
errors that name their place in the file; the `screen:` section's models in `screen`). `default.yaml`
is the shipped config.yaml. May import the core's leaf modules (errors, units) and `channels.base`
(each adapter's own options model); nothing else of the project.
"""
