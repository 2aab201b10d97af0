"""The review desk: my queue, the item page, and the reviewers' actions, server-rendered (no JavaScript).

Every route needs a reviewer account's session, on loopback too (publisher/app/web/auth.py); every form
carries a CSRF token (publisher/app/web/security.py). The actions are the review module's own
(`Review.approve`, `approve_many`, `reject`, `override`), so the desk obeys the same rules as the command
line: separation of duties, the author never signs, override only for `review.override_roles`. Store
work runs in a worker thread so that the daemon's event loop never waits on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.app.web import desk_views
from publisher.app.web.auth import Principal
from publisher.app.web.desk_words import Words
from publisher.app.web.security import remote
from publisher.clock import CHINA
from publisher.errors import PublisherError
from publisher.model import IN_REVIEW, RevisionState
from publisher.review import rules
from publisher.review.chain import Review, Waiting

if TYPE_CHECKING:
    from jinja2 import Environment

    from publisher.app.web.auth import Auth
    from publisher.app.web.context import WebContext

log = structlog.get_logger()
MAX_BATCH = 500  # revisions one batch form may carry


@dataclass(frozen=True)
class QueueRow:
    w: Waiting
    left: int | None  # working days to the legal deadline (negative: overdue)
    findings: int
    signable: bool  # this account may tick it for a batch sign-off


class Desk:
    def __init__(self, ctx: WebContext, auth: Auth, env: Environment) -> None:
        self.ctx = ctx
        self.auth = auth
        self.env = env
        self.review = ctx.review or Review(ctx.store, ctx.config, ctx.clock)

    # --- common ------------------------------------------------------------------------------------

    async def _reviewer(self, request: Request) -> Principal | Response:
        """The signed-in reviewer, or the response that sends the browser to log in."""
        who = await self.auth.current(request)
        if who is None:
            return self.auth.to_login(request)
        if who.account is None:
            return Response(Words(self.auth.locale(request))("need_account"), status_code=403,
                            media_type="text/plain; charset=utf-8")
        return who

    def _render(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        loc = self.auth.locale(request)
        words = Words(loc)
        html = self.env.get_template(template).render(
            _=words, locale=loc, config=self.ctx.config, csrf=self.auth.security.csrf.token(request),
            other="en" if loc == "zh-CN" else "zh-CN", local=_local, **values)
        response = self.auth.security.csrf.remember(request, HTMLResponse(html, status_code=status))
        if "lang" in request.query_params:
            response.set_cookie("lang", loc, max_age=365 * 86400, samesite="strict")
        return response

    # --- my queue ----------------------------------------------------------------------------------

    def _queue(self, who: Principal) -> list[QueueRow]:
        now = self.ctx.clock.now()
        rows = [QueueRow(w=w, left=desk_views.working_days_left(self.ctx.config, w.doc_date, w.created_at, now),
                         findings=len(w.findings),
                         signable=w.state == RevisionState.REVIEW and who.account.name not in w.signed_by)
                for w in self.review.waiting(who.account)]
        # most urgent first: fewest working days left to the legal deadline, then the longest wait
        rows.sort(key=lambda r: (r.left if r.left is not None else 10**6, r.w.created_at or now, r.w.item_id))
        return rows

    async def queue(self, request: Request) -> Response:
        who = await self._reviewer(request)
        if isinstance(who, Response):
            return who
        rows = await run_in_threadpool(self._queue, who)
        return self._render(request, "desk_queue.html", user=who, rows=rows, outcomes=None)

    async def batch(self, request: Request) -> Response:
        who = await self._reviewer(request)
        if isinstance(who, Response):
            return who
        form = await self.auth.security.csrf.form(request)
        read: dict[str, int] = {}  # each ticked box is "REVISION:ITEM_ID": the revision the reviewer saw listed
        for value in [str(v) for v in form.getlist("item_id")][:MAX_BATCH]:
            number, _, item_id = value.partition(":")
            if not number.isdigit() or not item_id:
                return Response("item_id: REVISION:ITEM_ID expected", status_code=400)
            read[item_id] = int(number)
        ids = list(read)
        outcomes = (await run_in_threadpool(self.review.approve_many, ids, who.account, None, remote(request), read)
                    if ids else [])
        self._wake()
        log.info("desk.batch_approve", account=who.name, asked=len(ids), approved=sum(o.ok for o in outcomes),
                 client=remote(request))
        rows = await run_in_threadpool(self._queue, who)
        return self._render(request, "desk_queue.html", user=who, rows=rows, outcomes=outcomes, asked=len(ids))

    # --- the item page -----------------------------------------------------------------------------

    def _item(self, item_id: str, who: Principal, locale: str) -> dict[str, Any] | None:
        store = self.ctx.store
        rev = store.revision(item_id)
        if rev is None:
            return None
        earlier = [r for n in range(rev.number - 1, 0, -1) if (r := store.revision(item_id, n)) is not None]
        live = next((r for r in earlier if r.approved_at is not None and not r.retract), None)
        delivered = store.deliveries_of(item_id)
        live_url = next((d.url for d in delivered if d.url and self._is_site(d.channel)), None)
        marks = desk_views.findings(rev, locale)
        views, seen = desk_views.views(self.ctx, rev, marks, live_url)
        approvals = {r.id: store.approvals(r.id) for r in [rev, *earlier]}
        config, account = self.ctx.config, who.account
        if rev.retract:  # the same reading of the rules as Review.waiting, for this one revision
            next_role = None if approvals[rev.id] else next(iter(config.review.retract_roles), None)
            may_sign = set(config.review.retract_roles) if next_role else set()
        else:
            chain = rules.chain_for(config, rev.category, [r.category for r in earlier])
            next_role = rules.next_step(chain, approvals[rev.id])
            may_sign = {next_role} if next_role else set()
        signed_by = {a.by for a in approvals[rev.id] if a.action == "approve"}
        may_override = rev.state == RevisionState.BLOCKED and bool(set(config.review.override_roles) & account.roles)
        signable = rev.state == RevisionState.REVIEW and bool(may_sign & account.roles) and account.name not in signed_by
        return {
            "rev": rev, "live": live, "views": views, "marks": marks, "seen": seen, "diff": desk_views.diff(live, rev),
            "next_role": next_role, "sign_as": next_role or min(may_sign & account.roles, default=None),
            "signable": signable, "may_override": may_override, "in_review": rev.state in IN_REVIEW,
            "history": [rev, *earlier], "approvals": approvals,
            "deliveries": delivered, "audit": store.audit_log(item_id, limit=100),
            "left": desk_views.working_days_left(self.ctx.config, rev.doc_date, rev.created_at, self.ctx.clock.now()),
        }

    def _is_site(self, channel: str) -> bool:
        cfg = self.ctx.config.channels.get(channel)
        return cfg is not None and cfg.type == "wordpress"

    async def item(self, request: Request) -> Response:
        who = await self._reviewer(request)
        if isinstance(who, Response):
            return who
        loc = self.auth.locale(request)
        page = await run_in_threadpool(self._item, request.path_params["item_id"], who, loc)
        if page is None:
            return Response(Words(loc)("no_item"), status_code=404, media_type="text/plain; charset=utf-8")
        return self._render(request, "desk_item.html", user=who, done=request.query_params.get("done"),
                            refused=request.query_params.get("refused"), **page)

    async def act(self, request: Request) -> Response:
        """approve / reject / override one revision; back to its page with what happened."""
        who = await self._reviewer(request)
        if isinstance(who, Response):
            return who
        form = await self.auth.security.csrf.form(request)
        item_id, action = request.path_params["item_id"], request.path_params["action"]
        # a reason goes into the store, the audit log and the editor's note: printable text and line breaks only
        reason = "".join(ch for ch in str(form.get("reason", "")) if ch.isprintable() or ch in "\n\t").strip()[:2000]
        number = str(form.get("revision", ""))
        if not number.isdigit():
            return Response("revision: the number of the revision read is required", status_code=400)
        read = int(number)  # a newer revision that arrived meanwhile is refused, never signed unseen
        words = Words(self.auth.locale(request))
        try:
            if action == "approve":
                state = await run_in_threadpool(self.review.approve, item_id, who.account, None, remote(request), read)
                done = words("done_approve", item=item_id, state=words("state_" + state.value))
            elif action == "reject":
                await run_in_threadpool(self.review.reject, item_id, who.account, reason, remote(request), read)
                done = words("done_reject", item=item_id)
            elif action == "override":
                state = await run_in_threadpool(self.review.override, item_id, who.account, reason, remote(request), read)
                done = words("done_override", item=item_id, state=words("state_" + state.value))
            else:
                return Response("unknown action", status_code=404)
        except PublisherError as exc:
            log.info("desk.refused", account=who.name, item_id=item_id, action=action, why=str(exc))
            return RedirectResponse(f"/desk/item/{quote(item_id, safe='')}?refused={quote(str(exc)[:500])}",
                                    status_code=303)
        self._wake()
        log.info("desk.action", account=who.name, item_id=item_id, action=action, client=remote(request))
        return RedirectResponse(f"/desk/item/{quote(item_id, safe='')}?done={quote(done)}", status_code=303)

    async def attachment(self, request: Request) -> Response:
        """One attachment of an item's newest revision, as a download (never shown inline: an HTML file from an
        editor must not run on the desk's origin), read from the queue's archive only."""
        who = await self._reviewer(request)
        if isinstance(who, Response):
            return who
        rev = await run_in_threadpool(self.ctx.store.revision, request.path_params["item_id"])
        index = request.path_params["index"]
        if rev is None or not 0 <= index < len(rev.attachments):
            return Response(Words(self.auth.locale(request))("no_item"), status_code=404,
                            media_type="text/plain; charset=utf-8")
        path = await run_in_threadpool(self._archived, str(rev.attachments[index].get("path", "")))
        if path is None:
            log.warning("desk.attachment_missing", item_id=rev.item_id, index=index)
            return Response("the attachment is not in the queue's archive", status_code=404)
        name = str(rev.attachments[index].get("name") or path.name).rpartition("/")[2]
        return FileResponse(path, filename=name, content_disposition_type="attachment",
                            headers={"X-Content-Type-Options": "nosniff"})

    def _archived(self, stored: str) -> Path | None:
        """The attachment's file when it lies in the queue's archive (symlinks resolved), else None."""
        archive = (self.ctx.config.queue_dir / "archive").resolve()
        path = Path(stored).resolve()
        return path if path.is_relative_to(archive) and path.is_file() else None

    def _wake(self) -> None:
        if self.ctx.dispatcher is not None:  # approved rows go out now, not at the next poll
            self.ctx.dispatcher.wake()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/desk", self.queue),
            Route("/desk/approve", self.batch, methods=["POST"]),
            Route("/desk/item/{item_id}/file/{index:int}", self.attachment),
            Route("/desk/item/{item_id}/{action}", self.act, methods=["POST"]),
            Route("/desk/item/{item_id}", self.item),
        ]


def _local(at: datetime | None) -> str:
    return at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M") if at else "—"

