"""The `/_sandbox/...` control endpoints every stand-in shares, over raw HTTP."""

from __future__ import annotations

import httpx
import pytest

from publisher.sandbox import SERVICES, SandboxServer


async def test_index_lists_every_service_with_its_knobs(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """GET /_sandbox/ names every stand-in with its fault knobs and its request count."""
    index = (await http.get(sandbox.base_url + "/_sandbox/")).json()
    assert set(index) == set(SERVICES)
    assert index["weibo"]["faults"]["burst_429"] == 0 and index["weibo"]["requests"] == 0


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "received"), ("GET", "requests"), ("PUT", "faults"), ("PUT", "settings"),
])
async def test_unknown_service_is_404(sandbox: SandboxServer, http: httpx.AsyncClient, method: str,
                                      path: str) -> None:
    """A service that does not exist answers 404 with a JSON error on every per-service endpoint."""
    resp = await http.request(method, f"{sandbox.base_url}/_sandbox/nowhere/{path}", json={})
    assert resp.status_code == 404
    assert resp.json() == {"error": "no such service"}


async def test_faults_set_over_http_and_unknown_knob_refused(sandbox: SandboxServer,
                                                             http: httpx.AsyncClient) -> None:
    """PUT faults turns a knob and answers the snapshot; an unknown knob is a 400 naming the known ones."""
    url = sandbox.base_url + "/_sandbox/portal/faults"
    resp = await http.put(url, json={"burst_429": 2})
    assert resp.status_code == 200 and resp.json()["faults"]["burst_429"] == 2
    assert sandbox.services["portal"].faults.burst_429 == 2
    refused = await http.put(url, json={"lightning": True})
    assert refused.status_code == 400 and "burst_429" in refused.json()["error"]


async def test_settings_only_for_services_that_have_them(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """Settings change only known keys of a stand-in that has settings; the hub has none."""
    url = sandbox.base_url + "/_sandbox/{}/settings"
    changed = await http.put(url.format("weibo"), json={"posts_per_hour": 1000})
    assert changed.status_code == 200 and changed.json()["posts_per_hour"] == 1000
    unknown = await http.put(url.format("weibo"), json={"posts_per_minute": 1})
    assert unknown.status_code == 400 and "posts_per_minute" in unknown.json()["error"]
    none = await http.put(url.format("hub"), json={})
    assert none.status_code == 404 and none.json() == {"error": "hub has no settings"}


async def test_reset_forgets_state_and_knobs(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """POST /_sandbox/reset clears the knobs, the request logs and what each stand-in holds, and seeds it again."""
    sandbox.services["mastodon"].faults.burst_429 = 5
    sandbox.services["weibo"].store["settings"]["posts_per_hour"] = 1
    await http.get(sandbox.url("wordpress") + "/wp-json/wp/v2/posts")
    resp = await http.post(sandbox.base_url + "/_sandbox/reset")
    assert resp.json() == {"reset": list(SERVICES)}
    assert sandbox.services["mastodon"].faults.burst_429 == 0
    assert sandbox.services["weibo"].store["settings"]["posts_per_hour"] == 30
    assert sandbox.services["wordpress"].requests == []
    held = (await http.get(sandbox.base_url + "/_sandbox/wordpress/received")).json()
    assert held["posts"] == [] and [c["slug"] for c in held["categories"]] == ["uncategorized"]
