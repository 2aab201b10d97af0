"""The `publisher` command (`main`), and `publisher lag` with its text tables (`lag`, `table`), which
imports only click, PyYAML and the standard library until it knows whether the running daemon
answers. Heavy modules are imported inside the commands that use them.
"""
