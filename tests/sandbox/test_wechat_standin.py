"""The WeChat stand-in is as strict as the platform's documents: errcodes in HTTP 200, tokens, limits, paging."""

from __future__ import annotations

from pathlib import Path

import httpx

from publisher.sandbox import CREDENTIALS, SandboxServer

PNG = (Path(__file__).resolve().parents[2] / "publisher" / "sandbox" / "wechat_cover.png").read_bytes()


async def test_tokens_as_the_platform_hands_them_out(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """GET /cgi-bin/token checks grant_type, appid and secret in that order (40002, 40013, 40125); the stable token
    is the same one until it expires or is force-refreshed; a token expired by the knob answers 42001."""
    base = sandbox.url("wechat") + "/cgi-bin"
    appid, secret = CREDENTIALS["wechat_appid"], CREDENTIALS["wechat_secret"]
    assert (await http.get(f"{base}/token", params={"grant_type": "x"})).json()["errcode"] == 40002
    ask = {"grant_type": "client_credential", "appid": "wx1", "secret": secret}
    assert (await http.get(f"{base}/token", params=ask)).json()["errcode"] == 40013
    assert (await http.get(f"{base}/token", params={**ask, "appid": appid, "secret": "x"})).json()["errcode"] == 40125
    stable = {"grant_type": "client_credential", "appid": appid, "secret": secret}
    first = (await http.post(f"{base}/stable_token", json=stable)).json()
    assert first["expires_in"] == 7200 and (await http.post(f"{base}/stable_token", json=stable)).json()[
        "access_token"] == first["access_token"]
    forced = (await http.post(f"{base}/stable_token", json={**stable, "force_refresh": True})).json()
    assert forced["access_token"] != first["access_token"]
    (await http.put(f"{sandbox.base_url}/_sandbox/wechat/settings", json={"expire_tokens": True})).raise_for_status()
    answer = await http.post(f"{base}/draft/batchget", params={"access_token": forced["access_token"]}, json={})
    assert answer.status_code == 200 and answer.json()["errcode"] == 42001


async def test_the_stand_in_is_strict(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """The stand-in answers as WeChat does: 200 with an errcode for a missing or unknown token, an external
    picture dropped, a title over 32 characters refused, count over 20 refused."""
    base = sandbox.url("wechat") + "/cgi-bin"
    assert (await http.post(f"{base}/draft/batchget", json={})).json()["errcode"] == 41001
    assert (await http.post(f"{base}/draft/batchget?access_token=x", json={})).json()["errcode"] == 40001
    token = (await http.post(f"{base}/stable_token", json={"grant_type": "client_credential",
                                                           "appid": CREDENTIALS["wechat_appid"],
                                                           "secret": CREDENTIALS["wechat_secret"]})).json()
    q = {"access_token": token["access_token"]}
    assert (await http.post(f"{base}/draft/batchget", params=q, json={"offset": 0, "count": 21})).json()["errcode"] == 47001
    thumb = (await http.post(f"{base}/material/add_material", params={**q, "type": "image"},
                             files={"media": ("c.png", PNG, "image/png")})).json()["media_id"]
    long = {"title": "标" * 33, "content": "x", "thumb_media_id": thumb}
    assert (await http.post(f"{base}/draft/add", params=q, json={"articles": [long]})).json()["errcode"] == 45003
    assert (await http.post(f"{base}/media/uploadimg", params=q,
                            files={"media": ("x.gif", b"GIF89a....", "image/gif")})).json()["errcode"] == 40005
    assert CREDENTIALS["wechat_secret"] not in str(sandbox.services["wechat"].requests)  # the log keeps no secret


