"""The WeChat official account (微信公众号): articles through the draft box and free publishing (发布).

Publishing an item: its cover (the first picture attachment, else `default_cover`; permanent material kept by
content hash, channels/wechat_api.py) → the pictures in its body through `media/uploadimg`, each `<img>` pointed
at the URL WeChat returned (channels/wechat_article.py) → `draft/add` (title, author, digest from the summary,
sanitized HTML content within the platform's limits, `content_source_url` = the `link_from` article, 阅读原文) →
`freepublish/submit`. The receipt holds the `publish_id`: the submit only says WeChat accepted the job. `verify`
reads `freepublish/get` until `publish_status` is 0 and hands back the article's URL; 2, 3 and 4 (the platform
refused it) and 5, 6 (deleted or banned after it was live) end the delivery as failed, in words an admin
understands.

Publishing shows the article on the account's page and in search; it does not push it to followers (a mass send,
`message/mass/sendall`, limited to one a day for a subscription account, is not done here).

Exactly once: the send checkpoints its progress on the delivery (channels.base.Progress): the draft's `media_id`
once `draft/add` answered, then the `publish_id` once `freepublish/submit` did. After a crash `find` looks for the
item (its title and digest, and its `content_source_url` when it has one) in the published list; then, with a
`publish_id`, at the publish job itself (still publishing: its receipt, which the read-back follows; refused: the
platform's reason); then in the draft box, where an orphan draft (a crash between `draft/add` and the submit) is
submitted, not made again. A draft that left the box without a known job was submitted just before the crash, and
WeChat may publish it for a long while: `find` says so (a TransientError: look again later) and never lets a second
article be made; past `publish_timeout` after the checkpoint it hands the delivery to a person, who looks in
公众平台 → 发表记录.

Edits: no API edits a published article. By default an update is a manual task carrying the article's link and
what changed; `on_edit: republish` deletes the article and publishes the new revision (its URL changes).
"""

from __future__ import annotations

import difflib
from datetime import datetime, timedelta
from typing import Any

import structlog

from channels.base import ChannelError, ManualTask, PermanentError, Receipt, Recheck, Refused, TransientError
from channels.render import render_html, render_text
from channels.wechat_api import Missing, WechatOptions, fit, matches
from channels.wechat_article import DIGEST_MAX, TITLE_MAX, WechatArticle
from publisher.model import Revision

log = structlog.get_logger()

FIND_PAGES = 5  # the newest 100 published articles and 100 drafts are searched
GONE_NOTICES = ("该内容已被发布者删除", "此内容因违规无法查看", "该内容已被删除")
# publish_status → (the platform's words, what it means for an admin)
STATUS = {
    2: ("原创声明失败", "the originality claim (原创声明) failed; publish it without the claim, or settle the claim"),
    3: ("常规失败", "publishing failed on WeChat's side; re-queue it"),
    4: ("平台审核不通过", "the platform's review refused it; see 公众平台 → 发表记录 for the reason, change the item and "
        "publish a new revision"),
    5: ("成功后用户删除", "it was published, then deleted on the account (公众平台); re-queue it if it should be there"),
    6: ("成功后系统封禁", "it was published, then banned by the platform; see the notice in 公众平台"),
}


class Wechat(WechatArticle):
    """The bureau's government official account on WeChat."""

    type_name = "wechat"
    Options = WechatOptions
    options: WechatOptions
    can_update = False  # a second send is no update on WeChat: an unseen article is never sent again by itself
    # a published article can be deleted on the account or banned later (publish_status 5, 6): look again, for a month
    recheck_live = Recheck(every=timedelta(hours=6), window=timedelta(days=30))

    # --- the five calls ----------------------------------------------------------------------

    async def publish(self, rev: Revision) -> Receipt:
        article = await self.article(rev)
        body = await self.call("POST", "cgi-bin/draft/add", what=f"add the draft of {rev.item_id}",
                               json={"articles": [article]})
        media_id = str(body.get("media_id") or "")
        if not media_id:
            raise TransientError(f"WeChat answered draft/add without a media_id: {str(body)[:200]}")
        log.info("wechat.draft_added", channel=self.name, item_id=rev.item_id, media_id=media_id)
        self.checkpoint(media_id=media_id)  # from here on a crash resumes from this draft, never makes a second
        return await self.submit(rev, media_id)

    async def submit(self, rev: Revision, media_id: str) -> Receipt:
        body = await self.call("POST", "cgi-bin/freepublish/submit", what=f"publish the draft of {rev.item_id}",
                               json={"media_id": media_id})
        publish_id = str(body.get("publish_id") or "")
        if not publish_id:
            raise TransientError(f"WeChat answered freepublish/submit without a publish_id: {str(body)[:200]}")
        log.info("wechat.submitted", channel=self.name, item_id=rev.item_id, publish_id=publish_id)
        self.checkpoint(media_id=media_id, publish_id=publish_id)
        return Receipt(remote_id=publish_id, extra={"publish_id": publish_id, "media_id": media_id})

    async def update(self, rev: Revision, receipt: Receipt) -> Receipt:
        state = await self.read_state(receipt)
        if isinstance(state, Refused):  # nothing public under this receipt (refused, deleted, banned): publish anew
            return await self.find(rev) or await self.publish(rev)
        if self.options.on_edit == "manual":
            raise ManualTask(await self.edit_task(rev, state if isinstance(state, Receipt) else receipt))
        old_url = receipt.url
        await self.retract(receipt)
        found = await self.find(rev)
        new = found if found is not None else await self.publish(rev)
        log.warning("wechat.republished", channel=self.name, item_id=rev.item_id, old_url=old_url,
                    publish_id=new.remote_id)
        return Receipt(remote_id=new.remote_id, url=new.url, extra={**new.extra, "replaced": old_url})

    async def edit_task(self, rev: Revision, receipt: Receipt) -> str:
        """A person's task: where the article is, and what changed in this revision against what readers see."""
        where = receipt.url or f"publish job {receipt.remote_id}"
        old: list[str] = []
        article_id = receipt.extra.get("article_id")
        if article_id:
            try:
                body = await self.call("POST", "cgi-bin/freepublish/getarticle", what="read the published article",
                                       json={"article_id": article_id})
                item = (body.get("news_item") or [{}])[0]
                old = [f"标题: {item.get('title', '')}", f"摘要: {item.get('digest', '')}",
                       *render_text(str(item.get("content") or "")).splitlines()]
            except (Missing, TransientError, PermanentError) as exc:
                old = [f"(the published text could not be read: {exc})"]
        new = [f"标题: {fit(rev.title, TITLE_MAX)}", f"摘要: {fit(rev.short_summary, DIGEST_MAX)}",
               *render_text(render_html(rev.body)).splitlines()]
        diff = "\n".join(list(difflib.unified_diff(old, new, "published", f"revision {rev.revision}", lineterm=""))[:60])
        return (f"WeChat has no API to edit a published article. Open {where}, and change it by hand in 公众平台 "
                f"(or set on_edit: republish on channel {self.name} to delete it and publish the new revision, whose "
                f"link will differ). Revision {rev.revision} of {rev.item_id} changes:\n{diff or '(no visible change)'}")

    async def retract(self, receipt: Receipt) -> None:
        article_id = receipt.extra.get("article_id")
        url = receipt.url
        if not article_id:
            state = await self.read_state(receipt)
            if isinstance(state, Refused):
                return  # it never went live, or is gone already: nothing is public
            if not isinstance(state, Receipt):
                raise TransientError(f"{self.display_name}: the article is still being published; it is removed once "
                                     "WeChat has finished", retry_after=60.0)
            article_id, url = state.extra["article_id"], state.url
        try:
            await self.call("POST", "cgi-bin/freepublish/delete", what="delete the article",
                            json={"article_id": article_id, "index": 0})
            log.info("wechat.article_deleted", channel=self.name, article_id=article_id)
        except Missing:
            log.info("wechat.already_gone", channel=self.name, article_id=article_id)
        if url and await self.page_shows(url):
            raise TransientError(f"{self.display_name}: WeChat took the deletion, but {url} still shows the article; "
                                 "looking again later", retry_after=60.0)

    async def find(self, rev: Revision) -> Receipt | None:
        wanted = self.identity(rev)
        found = await self.find_published(wanted)
        if found is not None:
            return found
        progress = self.progress()  # what the interrupted send recorded
        media_id, publish_id = str(progress.get("media_id") or ""), str(progress.get("publish_id") or "")
        if publish_id and (job := await self.job(publish_id, media_id)) is not None:
            log.warning("wechat.job_resumed", channel=self.name, item_id=rev.item_id, publish_id=publish_id)
            return job
        for item in await self.listing("cgi-bin/draft/batchget", "read the draft box"):
            if (media_id and item.get("media_id") == media_id) or matches(item, wanted):
                log.warning("wechat.orphan_draft", channel=self.name, item_id=rev.item_id, media_id=item.get("media_id"))
                return await self.submit(rev, str(item["media_id"]))
        if media_id:  # submitted just before the crash, and not published yet
            raise self.still_publishing(rev, media_id, progress.get("at"))
        return None

    async def job(self, publish_id: str, media_id: str) -> Receipt | None:
        """The receipt of a publish job a crash interrupted: the article's once published, the job's while WeChat
        is still publishing (the read-back follows it from there); Refused when WeChat refused it; None when
        WeChat does not know the job."""
        receipt = Receipt(remote_id=publish_id, extra={"publish_id": publish_id, "media_id": media_id})
        try:
            state = await self.read_state(receipt)
        except Missing:
            return None
        if isinstance(state, Refused):
            raise state
        return state if isinstance(state, Receipt) else receipt

    def still_publishing(self, rev: Revision, media_id: str, at: object) -> ChannelError:
        """A draft submitted just before a crash, its job unknown: still being published (look again later) until
        `publish_timeout` after the checkpoint; then a person's question, never a second article."""
        try:
            since: datetime | None = datetime.fromisoformat(str(at))
        except ValueError:
            since = None
        bound = timedelta(seconds=self.options.publish_timeout)
        left = (since + bound - self.clock.now()).total_seconds() if since is not None else 0.0
        what = f"{self.display_name}: {rev.item_id} was handed to WeChat for publishing (draft {media_id})"
        if left > 0:
            return TransientError(f"{what} just before the daemon stopped, and is not among the published articles "
                                  "yet: WeChat is still publishing it; looking again", retry_after=min(600.0, max(30.0, left)))
        return PermanentError(
            f"{what} at {since or 'an unknown time'}, just before the daemon stopped, and has not appeared among the "
            f"published articles in {self.options.publish_timeout / 60:g} minutes since. It is not published a "
            "second time by itself: look in 公众平台 → 内容与互动 → 发表记录. If it shows there as published or still "
            f"publishing (发表中), wait until it is done, then `publisher retry {rev.item_id} --channel {self.name}` "
            "finds it and records its link; if it failed or is missing there, the same retry publishes it anew")

    async def find_published(self, wanted: dict[str, str]) -> Receipt | None:
        for item in await self.listing("cgi-bin/freepublish/batchget", "read the published articles"):
            news = (item.get("content") or {}).get("news_item") or [{}]
            if matches(item, wanted) and not news[0].get("is_deleted"):
                article_id = str(item["article_id"])
                return Receipt(remote_id=article_id, url=news[0].get("url"), extra={"article_id": article_id})
        return None

    async def listing(self, path: str, what: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in range(FIND_PAGES):
            body = await self.call("POST", path, what=what, json={"offset": page * 20, "count": 20, "no_content": 1})
            chunk = body.get("item") or []
            items += [i for i in chunk if isinstance(i, dict)]
            if len(chunk) < 20 or len(items) >= int(body.get("total_count") or 0):
                break
        return items

    async def verify(self, receipt: Receipt) -> Receipt | bool:
        """A Receipt with the article's URL once WeChat says it is published; False while it is publishing; Refused
        when WeChat refused it or took it down."""
        state = await self.read_state(receipt)
        if isinstance(state, Refused):
            raise state
        return state

    async def read_state(self, receipt: Receipt) -> Receipt | bool | Refused:
        publish_id = receipt.extra.get("publish_id") or (None if receipt.extra.get("article_id") else receipt.remote_id)
        if publish_id is None:  # found in the published list: only the article is known
            try:
                body = await self.call("POST", "cgi-bin/freepublish/getarticle", what="read the article back",
                                       json={"article_id": receipt.extra["article_id"]})
            except Missing:
                return self.refused(5)
            item = (body.get("news_item") or [{}])[0]
            return self.refused(5) if item.get("is_deleted") else Receipt(
                receipt.remote_id, item.get("url") or receipt.url, dict(receipt.extra))
        body = await self.call("POST", "cgi-bin/freepublish/get", what="read the publish job back",
                               json={"publish_id": publish_id})
        status = body.get("publish_status")
        if status == 1:
            return False
        if status == 0:
            items = (body.get("article_detail") or {}).get("item") or [{}]
            return Receipt(receipt.remote_id, items[0].get("article_url") or receipt.url,
                           {**receipt.extra, "article_id": str(body.get("article_id") or "")})
        if status in STATUS:
            return self.refused(int(status), body.get("fail_idx"))
        raise TransientError(f"WeChat answered freepublish/get with an unknown publish_status {status!r}")

    def refused(self, status: int, fail_idx: Any = None) -> Refused:
        words, meaning = STATUS[status]
        return Refused(f"{self.display_name}: {words} (publish_status {status}): {meaning}"
                       + (f"; failed articles: {fail_idx}" if fail_idx else ""))

    async def page_shows(self, url: str) -> bool:
        """Does the article's public page still show it? WeChat answers 200 with a notice when it is gone."""
        resp = await self.request("GET", url, what=f"open the article page {url}", ok=range(200, 500),
                                  follow_redirects=True)
        return resp.is_success and not any(notice in resp.text for notice in GONE_NOTICES)


__all__ = ["Wechat"]
