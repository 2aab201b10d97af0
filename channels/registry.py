"""The registry: config.yaml's `type` → the adapter class. A new protocol is one file in channels/
plus one line here. Apart from base.py, which the adapters import, so that the lookup's importlib
strings point one way only (registry → adapters → base).
"""

from __future__ import annotations

import importlib

from channels.base import Channel
from publisher.errors import PublisherError

# type name → "module:Class"; a new protocol is one file plus one line here.
REGISTRY: dict[str, str] = {
    "wordpress": "channels.wordpress:WordPress",
    "http_push": "channels.http_push:HttpPush",
    "atom_feed": "channels.atom_feed:AtomFeed",
    "weibo": "channels.weibo:Weibo",
    "mastodon": "channels.mastodon:Mastodon",
    "smtp": "channels.smtp:Smtp",
    "wechat": "channels.wechat:Wechat",
}


def adapter_class(type_name: str) -> type[Channel]:
    try:
        target = REGISTRY[type_name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise PublisherError(f"unknown channel type {type_name!r}; known types: {known}") from None
    module, _, cls = target.partition(":")
    found = getattr(importlib.import_module(module), cls)
    if not (isinstance(found, type) and issubclass(found, Channel)):
        raise TypeError(f"{target} is not a Channel adapter")  # a wrong line in REGISTRY: a defect
    return found
