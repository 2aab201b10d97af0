"""The root of the project's own errors, importable without anything heavy (the lag CLI's fast path)."""

from __future__ import annotations


class PublisherError(Exception):
    """Root of every error this project raises on purpose. The message says what to do next."""
