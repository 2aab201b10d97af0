"""Stand-in of the WeChat official account API (微信公众号): token, material, draft box and free publishing.

Built from the official documents (developers.weixin.qq.com, 公众号 API): every call answers HTTP 200 with JSON,
an error as `{"errcode", "errmsg"}`. `GET /cgi-bin/token` (or `POST /cgi-bin/stable_token`) hands out a token
that lives `expires_in` seconds; every other call carries it as `?access_token=`. Permanent images
(`material/add_material`, bmp/png/jpeg/gif, ≤ 10 MB) are listed by `material/batchget_material`; pictures in a body
come from `media/uploadimg` (jpg/png, < 1 MB), and an `<img>` from anywhere else is dropped from the content, as are
scripts. `draft/add` checks the documented limits (title ≤ 32 characters, author ≤ 16, digest ≤ 128, content under
20,000 characters and 1 MB, a permanent thumb_media_id). `freepublish/submit` takes a draft out of the draft box and
answers a `publish_id`; `freepublish/get` says 1 (publishing) for `publish_seconds`, then 0 with the article, or the
configured failure (2 原创声明失败, 3 常规失败, 4 平台审核不通过); 5 after a deletion, 6 after a ban. The article's public
page is `/s?mid=…`: a deleted or banned one still answers 200, with the notice WeChat shows in its place.

It also serves `/demo-cover.png` (publisher/sandbox/wechat_cover.png), the shipped config's default cover.
Settings (PUT /_sandbox/wechat/settings): see `DEFAULT_SETTINGS`. `expire_tokens: true` expires every token handed
out so far, once (the next call with one gets 42001).
"""

from __future__ import annotations

import hashlib
import html
import json
import time
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.sandbox.core import CREDENTIALS, FaultKind, StandIn
from publisher.sandbox.wechat_rules import (
    DEFAULT_SETTINGS,
    MAX_MATERIAL,
    MAX_UPLOADIMG,
    PUBLIC_NOTICE,
    check_article,
    err,
    image_kind,
    page_of,
    without_content,
)

DEMO_COVER = Path(__file__).with_name("wechat_cover.png")


class Wechat(StandIn):
    """One official account: its tokens, images, drafts, publish jobs and articles."""

    def seed(self) -> None:
        self.store.update(settings=dict(DEFAULT_SETTINGS, banned=[]), tokens={}, materials={}, images=[],
                          drafts={}, jobs={}, articles={}, seq=0)

    def received(self) -> dict[str, Any]:
        self.settle()
        articles = list(self.store["articles"].values())
        return {"articles": [a for a in articles if self.status_of(a) == 0],
                "removed": [a for a in articles if self.status_of(a) != 0],
                "drafts": [{"media_id": k, **v} for k, v in self.store["drafts"].items()],
                "jobs": list(self.store["jobs"].values()),
                "materials": [{"media_id": k, "name": v["name"], "url": v["url"]} for k, v in self.store["materials"].items()],
                "images": list(self.store["images"])}

    def routes(self) -> list[BaseRoute]:
        calls = {"material/add_material": self.add_material, "material/batchget_material": self.batchget_material,
                 "media/uploadimg": self.uploadimg, "draft/add": self.draft_add, "draft/get": self.draft_get,
                 "draft/update": self.draft_update, "draft/delete": self.draft_delete,
                 "draft/batchget": self.draft_batchget, "freepublish/submit": self.submit,
                 "freepublish/get": self.publish_get, "freepublish/batchget": self.publish_batchget,
                 "freepublish/getarticle": self.getarticle, "freepublish/delete": self.publish_delete}
        return [Route("/cgi-bin/token", self.token, methods=["GET"]),
                Route("/cgi-bin/stable_token", self.stable_token, methods=["POST"]),
                *(Route(f"/cgi-bin/{path}", self.guarded(fn), methods=["POST"]) for path, fn in calls.items()),
                Route("/s", self.page), Route("/demo-cover.png", self.demo_cover)]

    def next_id(self, prefix: str) -> str:
        self.store["seq"] += 1
        return f"{prefix}{self.store['seq']:06d}{hashlib.sha1(str(self.store['seq']).encode()).hexdigest()[:10]}"

    # --- token and the gate every call passes ------------------------------------------------------

    def ip_refused(self, request: Request) -> Response | None:
        allowed = self.store["settings"]["ip_whitelist"]
        ip = request.client.host if request.client else "0.0.0.0"
        return err(40164, ip=ip) if allowed is not None and ip not in allowed else None

    def issue(self, request: Request, appid: Any, secret: Any) -> Response:
        if refused := self.ip_refused(request):
            return refused
        if appid != CREDENTIALS["wechat_appid"]:
            return err(40013)
        if secret != CREDENTIALS["wechat_secret"]:
            return err(40125)
        token = self.next_id("TOKEN_")
        ttl = int(self.store["settings"]["token_ttl_s"])
        self.store["tokens"][token] = time.time() + ttl
        return JSONResponse({"access_token": token, "expires_in": ttl})

    async def token(self, request: Request) -> Response:
        q = request.query_params
        if q.get("grant_type") != "client_credential":
            return err(40002)
        return self.issue(request, q.get("appid"), q.get("secret"))

    async def stable_token(self, request: Request) -> Response:
        """The stable token: the one still valid is handed out again (with what is left of its life), unless
        `force_refresh`; so that several servers of one account share a token instead of revoking each other's."""
        body = await self.json(request)
        if not isinstance(body, dict) or body.get("grant_type") != "client_credential":
            return err(40002)
        current = self.store.get("stable")
        left = self.store["tokens"].get(current, 0.0) - time.time() if current else 0.0
        if left > 0 and not body.get("force_refresh") and body.get("appid") == CREDENTIALS["wechat_appid"] \
                and body.get("secret") == CREDENTIALS["wechat_secret"] and not self.ip_refused(request):
            return JSONResponse({"access_token": current, "expires_in": int(left)})
        answer = self.issue(request, body.get("appid"), body.get("secret"))
        self.store["stable"] = json.loads(bytes(answer.body)).get("access_token")
        return answer

    def guarded(self, fn: Any) -> Any:
        async def call(request: Request) -> Response:
            settings = self.store["settings"]
            if settings["expire_tokens"]:
                settings["expire_tokens"] = False
                self.store["tokens"] = dict.fromkeys(self.store["tokens"], 0.0)
            if refused := self.ip_refused(request):
                return refused
            token = request.query_params.get("access_token")
            if not token:
                return err(41001)
            if token not in self.store["tokens"]:
                return err(40001)
            if self.store["tokens"][token] <= time.time():
                return err(42001)
            if settings["quota_exhausted"]:
                return err(45009)
            self.settle()
            result: Response = await fn(request)
            return result
        return call

    @staticmethod
    async def json(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            return None

    async def upload(self, request: Request) -> tuple[str, bytes] | Response:
        if "multipart/form-data" not in request.headers.get("content-type", ""):
            return err(41005)
        form = await request.form(max_part_size=MAX_MATERIAL + 1)
        media = form.get("media")
        if not isinstance(media, UploadFile):
            return err(41005)
        return media.filename or "", await media.read()

    # --- images ------------------------------------------------------------------------------------

    async def add_material(self, request: Request) -> Response:
        if request.query_params.get("type") not in ("image", "thumb"):
            return err(40004)
        got = await self.upload(request)
        if isinstance(got, Response):
            return got
        name, data = got
        if image_kind(data) is None:
            return err(40005)
        if len(data) > MAX_MATERIAL:
            return err(40009)
        media_id = self.next_id("MEDIA_")
        url = f"{self.base}/mmbiz/{hashlib.sha1(data).hexdigest()}.{image_kind(data)}"
        self.store["materials"][media_id] = {"name": name, "url": url, "update_time": int(time.time())}
        return JSONResponse({"media_id": media_id, "url": url})

    async def batchget_material(self, request: Request) -> Response:
        body = await self.json(request)
        if not isinstance(body, dict) or body.get("type") != "image":
            return err(40004) if isinstance(body, dict) else err(47001)
        items = [{"media_id": k, **v} for k, v in reversed(self.store["materials"].items())]
        return page_of(body, items, lambda i: i)

    async def uploadimg(self, request: Request) -> Response:
        got = await self.upload(request)
        if isinstance(got, Response):
            return got
        _name, data = got
        if image_kind(data) not in ("jpg", "png"):
            return err(40005)
        if len(data) >= MAX_UPLOADIMG:
            return err(40009)
        url = f"{self.base}/mmbiz/{hashlib.sha1(data).hexdigest()}.{image_kind(data)}"
        self.store["images"].append(url)
        return JSONResponse({"url": url})

    # --- the draft box -----------------------------------------------------------------------------

    def check_article(self, art: Any) -> Response | dict[str, Any]:
        return check_article(art, self.store["materials"], set(self.store["images"]))

    async def draft_add(self, request: Request) -> Response:
        body = await self.json(request)
        articles = body.get("articles") if isinstance(body, dict) else None
        if not isinstance(articles, list) or not 1 <= len(articles) <= 8:
            return err(44003)
        kept = [self.check_article(a) for a in articles]
        if refused := next((k for k in kept if isinstance(k, Response)), None):
            return refused
        media_id = self.next_id("DRAFT_")
        now = int(time.time())
        self.store["drafts"][media_id] = {"news_item": kept, "create_time": now, "update_time": now}
        return JSONResponse({"media_id": media_id, "item": []})

    def draft_of(self, body: Any) -> dict[str, Any] | None:
        return self.store["drafts"].get(body.get("media_id")) if isinstance(body, dict) else None

    async def draft_get(self, request: Request) -> Response:
        draft = self.draft_of(await self.json(request))
        return err(40007) if draft is None else JSONResponse({"news_item": draft["news_item"]})

    async def draft_update(self, request: Request) -> Response:
        body = await self.json(request)
        draft = self.draft_of(body)
        if draft is None:
            return err(40007)
        index = body.get("index", 0)
        if not isinstance(index, int) or not 0 <= index < len(draft["news_item"]):
            return err(47001)
        kept = self.check_article(body.get("articles"))
        if isinstance(kept, Response):
            return kept
        draft["news_item"][index] = kept
        draft["update_time"] = int(time.time())
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def draft_delete(self, request: Request) -> Response:
        body = await self.json(request)
        if self.draft_of(body) is None:
            return err(40007)
        del self.store["drafts"][body["media_id"]]
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def draft_batchget(self, request: Request) -> Response:
        body = await self.json(request)
        items = [{"media_id": k, "content": {"news_item": v["news_item"]}, "update_time": v["update_time"]}
                 for k, v in reversed(self.store["drafts"].items())]
        return page_of(body, items, without_content)

    # --- publishing --------------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        body = await self.json(request)
        draft = self.draft_of(body)
        if draft is None:
            return err(40007)
        del self.store["drafts"][body["media_id"]]  # a submitted draft leaves the draft box
        publish_id = str(2_247_483_000 + self.store["seq"] * 13 + 1)
        self.store["seq"] += 1
        settings = self.store["settings"]
        self.store["jobs"][publish_id] = {
            "publish_id": publish_id, "news_item": draft["news_item"], "status": 1, "article_id": None,
            "ready_at": time.time() + float(settings["publish_seconds"]), "outcome": int(settings["publish_outcome"])}
        return JSONResponse({"errcode": 0, "errmsg": "ok", "publish_id": publish_id})

    def settle(self) -> None:
        """Publish jobs whose time has come end in their outcome; a success becomes an article."""
        now = time.time()
        for job in self.store["jobs"].values():
            if job["status"] != 1 or job["ready_at"] > now:
                continue
            job["status"] = job["outcome"]
            if job["outcome"] == 0:
                article_id = self.next_id("ARTICLE_")
                mid = str(2_650_000_000 + self.store["seq"])
                items = [{**a, "url": f"{self.base}/s?__biz=MzA5NjAxNTE2MA==&mid={mid}&idx={i + 1}&sn="
                                      f"{hashlib.md5(article_id.encode()).hexdigest()}", "is_deleted": False}
                         for i, a in enumerate(job["news_item"])]
                job["article_id"] = article_id
                self.store["articles"][article_id] = {"article_id": article_id, "mid": mid, "publish_id": job["publish_id"],
                                                      "news_item": items, "update_time": int(now), "deleted": False}

    def status_of(self, article: dict[str, Any]) -> int:
        if article["deleted"]:
            return 5
        return 6 if article["article_id"] in self.store["settings"]["banned"] else 0

    async def publish_get(self, request: Request) -> Response:
        body = await self.json(request)
        job = self.store["jobs"].get(str(body.get("publish_id"))) if isinstance(body, dict) else None
        if job is None:
            return err(53600)
        out: dict[str, Any] = {"publish_id": job["publish_id"], "publish_status": job["status"]}
        article = self.store["articles"].get(job["article_id"] or "")
        if article is not None:
            out["publish_status"] = self.status_of(article)
            out["article_id"] = article["article_id"]
            out["article_detail"] = {"count": len(article["news_item"]),
                                     "item": [{"idx": i + 1, "article_url": a["url"]}
                                              for i, a in enumerate(article["news_item"])]}
        if job["status"] in (2, 3, 4):
            out["fail_idx"] = list(range(1, len(job["news_item"]) + 1))
        return JSONResponse(out)

    async def publish_batchget(self, request: Request) -> Response:
        body = await self.json(request)
        items = [{"article_id": a["article_id"], "content": {"news_item": a["news_item"]}, "update_time": a["update_time"]}
                 for a in reversed(self.store["articles"].values())]
        return page_of(body, items, without_content)

    def article_of(self, body: Any) -> dict[str, Any] | None:
        return self.store["articles"].get(body.get("article_id")) if isinstance(body, dict) else None

    async def getarticle(self, request: Request) -> Response:
        article = self.article_of(await self.json(request))
        if article is None:
            return err(53600)
        return JSONResponse({"news_item": article["news_item"]})

    async def publish_delete(self, request: Request) -> Response:
        body = await self.json(request)
        article = self.article_of(body)
        if article is None or article["deleted"]:
            return err(53600)
        index = body.get("index", 0)
        if not isinstance(index, int) or not 0 <= index <= len(article["news_item"]):
            return err(47001)
        targets = article["news_item"] if index == 0 else [article["news_item"][index - 1]]
        for item in targets:
            item["is_deleted"] = True
        article["deleted"] = all(i["is_deleted"] for i in article["news_item"])
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def page(self, request: Request) -> Response:
        """The article's public page (mp.weixin.qq.com/s?…): 200 even when it is gone, with WeChat's notice."""
        self.settle()
        mid, idx = request.query_params.get("mid"), request.query_params.get("idx", "1")
        article = next((a for a in self.store["articles"].values() if a["mid"] == mid), None)
        if article is None or not idx.isdigit() or not 1 <= int(idx) <= len(article["news_item"]):
            return HTMLResponse("<p>参数错误</p>")
        item = article["news_item"][int(idx) - 1]
        status = 5 if item["is_deleted"] else self.status_of(article)
        if status:
            return HTMLResponse(f"<!doctype html><meta charset=utf-8><p class=weui-msg>{PUBLIC_NOTICE[status]}</p>")
        return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>{html.escape(item['title'])}</title>"
                            f"<h1 id=activity-name>{html.escape(item['title'])}</h1>"
                            f"<div id=js_content>{item['content']}</div>")

    async def demo_cover(self, request: Request) -> Response:
        """Not WeChat's: the picture the shipped config names as its default cover, served here so that the URL
        resolves wherever the demo runs (a checkout or a directory `publisher init` made)."""
        return Response(DEMO_COVER.read_bytes(), media_type="image/png")

    def render_fault(self, kind: FaultKind, retry_after: str | None) -> Response:
        if kind == "unauthorized":
            return err(40001)
        if kind == "rate_limited":
            return err(45011)
        status = self.service.faults.error_status
        body = err(-1)
        return Response(body.body, status_code=status, media_type="application/json")


