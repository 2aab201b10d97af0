"""Check channels/wordpress.py against a REAL WordPress (not our stand-in): every call and error path.

    sudo deploy/wordpress-check/setup.sh        # a throw-away WordPress on http://127.0.0.1:8089
    python bench/check_wordpress.py             # reads /var/lib/wordpress-check/credentials.json
    python bench/check_wordpress.py --credentials path.json --keep   # --keep: leave the posts behind

Not part of the test suite or CI: it needs that local WordPress. It prints one row per step with PASS
or FAIL and what the real server answered (the last REST responses of the step), and exits 1 when a
step failed. Each run uses fresh item ids and a fresh category, so it can run again and again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from channels.base import ChannelError, PermanentError, Receipt, TransientError  # noqa: E402
from channels.transport import AiohttpTransport  # noqa: E402
from channels.wordpress import WordPress, slug_for  # noqa: E402
from publisher.clock import SystemClock  # noqa: E402
from publisher.model import Attachment, Revision  # noqa: E402

# A minimal well-formed PDF: WordPress checks an upload's real type against its extension.
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
       b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests to the network on the daemon's own transport (channels/transport.py), notes each answer,
    and can lose one answer on purpose."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport(httpx.Limits(max_connections=8))
        self.seen: list[str] = []
        self.lose_next: tuple[str, str] | None = None  # (method, path suffix) whose answer is "lost"
        self.blank_next: str | None = None  # path suffix of a GET whose list answer is replaced by []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await self.inner.handle_async_request(request)
        await resp.aread()
        route = request.url.path.split("/wp-json/", 1)[-1] if "/wp-json/" in request.url.path else request.url.path
        note = f"{request.method} {route} → {resp.status_code}"
        if "json" in resp.headers.get("content-type", ""):
            try:
                body = json.loads(resp.content)
            except ValueError:
                body = None
            if isinstance(body, dict) and "code" in body:
                note += f" {body['code']}"
        self.seen.append(note)
        if self.blank_next and request.method == "GET" and route.endswith(self.blank_next):
            self.blank_next = None
            self.seen[-1] += " (answer replaced by [])"
            return httpx.Response(200, json=[], request=request)
        if self.lose_next and request.method == self.lose_next[0] and route.endswith(self.lose_next[1]):
            self.lose_next = None
            self.seen[-1] += " (answer dropped)"
            raise httpx.ReadTimeout("answer lost on purpose", request=request)
        return resp

    async def aclose(self) -> None:
        await self.inner.aclose()


class Check:
    def __init__(self, rec: Recorder) -> None:
        self.rec, self.rows = rec, []

    async def step(self, name: str, fn: Callable[[], Awaitable[str | None]]) -> bool:
        start = len(self.rec.seen)
        try:
            note = await fn()
            ok = True
        except AssertionError as exc:
            ok, note = False, f"expected: {exc}"
        except Exception as exc:  # noqa: BLE001 — the table shows any failure
            ok, note = False, f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
        answered = "; ".join(self.rec.seen[start:][-3:])
        self.rows.append((name, ok, answered, note or ""))
        return ok

    def table(self) -> str:
        width = max(len(r[0]) for r in self.rows)
        lines = [f"{'step':<{width}}  result  real server answered (last 3)  — note", "-" * (width + 60)]
        for name, ok, answered, note in self.rows:
            lines.append(f"{name:<{width}}  {'PASS' if ok else 'FAIL'}    {answered}" + (f"  — {note}" if note else ""))
        passed = sum(1 for r in self.rows if r[1])
        lines.append(f"\n{passed}/{len(self.rows)} steps passed")
        return "\n".join(lines)


async def expect_error(coro: Awaitable[Any], status: int) -> ChannelError:
    try:
        await coro
    except ChannelError as exc:
        assert exc.status == status, f"HTTP {status}, got {exc.status}: {exc}"
        return exc
    raise AssertionError(f"HTTP {status}, but the call succeeded")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--credentials", default="/var/lib/wordpress-check/credentials.json")
    ap.add_argument("--keep", action="store_true", help="do not delete the check's posts at the end")
    args = ap.parse_args()
    creds = json.loads(Path(args.credentials).read_text())  # noqa: ASYNC240 — once, before any I/O
    site = creds["site"]
    run = time.strftime("%Y%m%d%H%M%S")
    rec = Recorder()
    check = Check(rec)
    tmp = Path(tempfile.mkdtemp(prefix="wp-check-"))
    (tmp / "report.pdf").write_bytes(PDF)
    (tmp / "tool.exe").write_bytes(b"MZ\x90\x00" + b"\x00" * 60)

    def make(username: str = "publisher", password: str | None = None, **options: Any) -> WordPress:
        opts = WordPress.Options(base_url=site, username=username, app_password=password or creds[username],
                                 **options)
        return WordPress(name="bureau_site", options=opts, http=http, clock=SystemClock(),
                         display_name="市安监局门户网站")

    def rev(item_id: str, revision: int = 1, **kw: Any) -> Revision:
        fields: dict[str, Any] = {
            "item_id": item_id, "revision": revision, "category": f"check-{run}", "category_name": f"核查栏目{run}",
            "title": "关于某化工企业“3·12”较大爆炸事故调查报告的通报 <R&D>",
            "body": "各区县安监局：\n\n现将事故调查情况通报如下。**请各单位认真吸取教训。**"
                    "\n\n- 加强隐患排查\n- 落实主体责任"
                    "\n\n<script>alert(1)</script>[链接](javascript:alert(1))",
            "summary": "通报某化工企业较大爆炸事故调查结果",
            "created_at": datetime.now(UTC),
        }
        fields.update(kw)
        return Revision.model_validate(fields)

    async with httpx.AsyncClient(transport=rec, timeout=30) as http:
        async def rest(path: str, **params: Any) -> Any:
            resp = await http.get(f"{site}/wp-json/wp/v2/{path}", params=params,
                                  auth=("publisher", creds["publisher"]))
            return resp.json() if resp.status_code == 200 else resp.status_code

        wp = make()
        item = f"check-{run}-0007"
        first = rev(item, attachments=(Attachment.of("事故调查报告.pdf", tmp / "report.pdf"),))
        state: dict[str, Receipt] = {}

        async def publish() -> str:
            receipt = await wp.publish(first)
            state["main"] = receipt
            post = await rest(f"posts/{receipt.remote_id}", context="edit")
            assert post["status"] == "publish", f"status publish, got {post['status']}"
            assert post["slug"] == slug_for(item), f"slug {slug_for(item)}, got {post['slug']}"
            title = "关于某化工企业“3·12”较大爆炸事故调查报告的通报 &lt;R&amp;D&gt;"  # plain text, escaped
            assert post["title"]["raw"] == title, post["title"]
            assert "<strong>请各单位认真吸取教训。</strong>" in post["content"]["raw"], "bold body kept"
            raw = post["content"]["raw"]
            assert "<script" not in raw and 'href="javascript:' not in raw, "no script, no javascript: link"
            assert post["excerpt"]["raw"] == "通报某化工企业较大爆炸事故调查结果", post["excerpt"]
            assert receipt.url == post["link"], f"receipt url {receipt.url} = link {post['link']}"
            return f"post {receipt.remote_id} at {receipt.url}"

        async def category() -> str:
            [term] = await rest("categories", slug=f"check-{run}")
            post = await rest(f"posts/{state['main'].remote_id}")
            assert post["categories"] == [term["id"]], f"categories [{term['id']}], got {post['categories']}"
            assert term["name"] == f"核查栏目{run}", term["name"]
            again = await make()._category_id(first)  # a fresh adapter finds the term by slug, creates nothing
            assert again == term["id"], f"found again as {term['id']}, got {again}"
            return f"term {term['id']} {term['slug']}"

        async def category_race() -> str:
            # another node created the term between our lookup and our create: WordPress answers 400
            # term_exists (same name, same slug) with the term id, which the adapter takes
            [term] = await rest("categories", slug=f"check-{run}")
            rec.blank_next = "wp/v2/categories"
            got = await make()._category_id(first)
            assert "400 term_exists" in rec.seen[-1], rec.seen[-1]
            assert got == term["id"], f"term {term['id']}, got {got}"
            return f"term_exists → term {got}"

        async def media() -> str:
            [(key, m)] = state["main"].extra["media"].items()
            item_ = await rest(f"media/{m['id']}")
            assert item_["title"]["rendered"] == "事故调查报告.pdf", item_["title"]
            assert item_["mime_type"] == "application/pdf", item_["mime_type"]
            post = await rest(f"posts/{state['main'].remote_id}", context="edit")
            assert m["url"] in post["content"]["raw"], "the attachment is linked from the post"
            file = await http.get(m["url"])
            assert file.status_code == 200 and file.content == PDF, f"file answers 200, got {file.status_code}"
            return f"media {m['id']} {m['url']}"

        async def upload_refused() -> str:
            bad = rev(f"check-{run}-exe", attachments=(Attachment.of("tool.exe", tmp / "tool.exe"),))
            exc = await expect_error(make().publish(bad), 500)
            assert isinstance(exc, PermanentError), f"PermanentError, got {type(exc).__name__}"
            return str(exc)[:90]

        async def lost_then_find() -> str:
            # the create's answer is lost: what it made is a draft (never public), which `find` leaves alone by
            # design; the retry takes that draft over (the oldest post with the slug is kept) instead of doubling it
            lost = rev(f"check-{run}-lost")
            slug = slug_for(lost.item_id)
            rec.lose_next = ("POST", "wp/v2/posts")
            try:
                await wp.publish(lost)
                raise AssertionError("the publish to fail with the answer lost")
            except TransientError:
                pass
            drafts = await rest("posts", slug=slug, status="draft", context="edit")
            assert isinstance(drafts, list) and len(drafts) == 1, f"one draft left by the lost create, got {drafts}"
            assert await wp.find(lost) is None, "find leaves the draft alone (it was never public)"
            receipt = await wp.publish(lost)
            assert receipt.remote_id == str(drafts[0]["id"]), f"the draft {drafts[0]['id']} kept, got {receipt.remote_id}"
            posts = await rest("posts", slug=slug, status="publish,future,draft,pending,private", context="edit")
            assert [(p["id"], p["status"]) for p in posts] == [(drafts[0]["id"], "publish")], f"one post, got {posts}"
            found = await wp.find(lost)
            assert found is not None and found.remote_id == receipt.remote_id, f"find sees it now, got {found}"
            assert found.extra.get("revision") == 1, f"revision 1, got {found.extra}"
            state["lost"] = found
            return f"the lost create's draft {receipt.remote_id} published by the retry, no second post"

        async def find_main() -> str:
            found = await wp.find(first)
            assert found is not None and found.remote_id == state["main"].remote_id, state["main"].remote_id
            assert found.url == state["main"].url, f"url {state['main'].url}, got {found.url}"
            missing = await wp.find(rev(f"check-{run}-never"))
            assert missing is None, f"nothing for an unsent item, got {missing}"
            return f"found {found.remote_id}; unsent item → None"

        async def find_chinese_id() -> str:
            cn = rev(f"通报-{run}-甲")
            receipt = await wp.publish(cn)
            state["cn"] = receipt
            found = await wp.find(cn)
            assert found is not None and found.remote_id == receipt.remote_id, "a Chinese item id is findable"
            return f"slug {found.extra['slug']}"

        async def update() -> str:
            second = rev(item, 2, title="更正：事故调查报告", body="第二版正文",
                         attachments=(Attachment.of("事故调查报告.pdf", tmp / "report.pdf"),))
            before = len(rec.seen)
            receipt = await wp.update(second, state["main"])
            uploads = sum(1 for s in rec.seen[before:] if s.startswith("POST wp/v2/media"))
            assert uploads == 0, f"the unchanged attachment is not uploaded again, got {uploads} uploads"
            post = await rest(f"posts/{receipt.remote_id}", context="edit")
            assert receipt.remote_id == state["main"].remote_id, "the same post"
            assert post["title"]["raw"] == "更正：事故调查报告", post["title"]
            assert "第二版正文" in post["content"]["raw"], "the new body"
            assert post["slug"] == slug_for(item) and receipt.extra["revision"] == 2, (post["slug"], receipt.extra)
            found = await wp.find(second)
            assert found is not None and found.extra["revision"] == 2, f"find sees revision 2, got {found}"
            state["main"] = receipt
            return f"post {receipt.remote_id} revision 2"

        async def verify() -> str:
            assert await wp.verify(state["main"]) is True, "verify True"
            page = await http.get(state["main"].url)
            assert page.status_code == 200 and "更正：事故调查报告" in page.text, f"page 200, got {page.status_code}"
            return f"{state['main'].url} → {page.status_code}"

        async def retract_trash() -> str:
            await wp.retract(state["main"])
            post = await rest(f"posts/{state['main'].remote_id}", context="edit")
            assert post["status"] == "trash", f"trash, got {post['status']}"
            assert await wp.verify(state["main"]) is False, "verify False once trashed"
            page = await http.get(state["main"].url)
            assert page.status_code == 404, f"the old link answers 404, got {page.status_code}"
            return f"trashed; slug now {post['slug']}"

        async def retract_again() -> str:
            await wp.retract(state["main"])  # the first answer was lost: 410 rest_already_trashed is fine
            assert "410 rest_already_trashed" in rec.seen[-1], rec.seen[-1]
            assert await wp.find(first) is None, "a trashed post is not found"
            return "repeat tolerated; find → None"

        async def republish_after_trash() -> str:
            again = await wp.publish(rev(item, 3))
            state["again"] = again
            assert again.remote_id != state["main"].remote_id
            assert again.extra["slug"] == slug_for(item), f"slug {slug_for(item)}, got {again.extra['slug']}"
            return f"new post {again.remote_id} keeps slug {again.extra['slug']}"

        async def retract_force() -> str:
            forced = make(force_delete=True)
            await forced.retract(state["lost"])
            gone = await rest(f"posts/{state['lost'].remote_id}", context="edit")
            assert gone == 404, f"404 after force delete, got {gone}"
            await forced.retract(state["lost"])  # repeat after a lost answer: 404 rest_post_invalid_id is fine
            assert "404 rest_post_invalid_id" in rec.seen[-1], rec.seen[-1]
            assert await wp.verify(state["lost"]) is False, "verify False once deleted"
            return "deleted; repeat and verify handled"

        async def wrong_password() -> str:
            bad = make(password="abcd EFGH ijkl MNOP qrst UVWX")
            exc = await expect_error(bad.publish(rev(f"check-{run}-badpw")), 401)
            assert isinstance(exc, PermanentError) and "application password" in str(exc), str(exc)
            # WordPress 6.1 serves a wrong password as an anonymous request: no incorrect_password, and find
            # (context=edit, non-public statuses) is refused as 400 rest_invalid_param / rest_forbidden_status
            exc = await expect_error(bad.find(first), 400)
            assert isinstance(exc, PermanentError) and "anonymous" in str(exc), str(exc)
            return str(exc)[:110]

        async def unknown_user() -> str:
            exc = await expect_error(make(username="nobody", password=creds["publisher"]).publish(rev("x")), 401)
            return str(exc)[:110]

        async def contributor() -> str:
            exc = await expect_error(make(username="contributor").publish(rev(f"check-{run}-cont")), 403)
            assert isinstance(exc, PermanentError) and "Editor or Administrator" in str(exc), str(exc)
            return str(exc)[:110]

        async def invalid_param() -> str:
            exc = await expect_error(wp._call("GET", "wp/v2/posts", "list posts", params={"per_page": 500}), 400)
            assert isinstance(exc, PermanentError), type(exc).__name__
            return str(exc)[:110]

        async def not_a_wordpress() -> str:
            odd = WordPress(name="bureau_site", options=WordPress.Options(base_url=site + "/nowhere",
                            username="publisher", app_password=creds["publisher"]), http=http, clock=SystemClock())
            exc = await expect_error(odd.find(first), 404)
            return str(exc)[:110]

        steps = [("publish (Chinese title/body, sanitized)", publish), ("category created via slug lookup", category),
                 ("category created meanwhile → term_exists", category_race),
                 ("attachment uploaded to /wp/v2/media", media), ("refused file type → PermanentError", upload_refused),
                 ("a lost create's draft is taken over, once", lost_then_find), ("find by slug (and not found)", find_main),
                 ("publish + find, Chinese item id", find_chinese_id), ("update (same post, no re-upload)", update),
                 ("verify (status publish, link 200)", verify), ("retract → trash, verify False", retract_trash),
                 ("retract again → 410 rest_already_trashed", retract_again),
                 ("publish again after trash keeps slug", republish_after_trash),
                 ("retract with force_delete, and again", retract_force),
                 ("wrong app password → 401 / 400 (anonymous)", wrong_password),
                 ("unknown user → 401 (anonymous)", unknown_user),
                 ("contributor user → 403", contributor), ("invalid param → 400", invalid_param),
                 ("base_url not the site root → 404", not_a_wordpress)]
        for name, fn in steps:
            await check.step(name, fn)

        if not args.keep:  # leave the site as it was: the check's posts, media and category go
            for key in ("again", "cn"):
                if key in state:
                    await make(force_delete=True).retract(state[key])
            if "main" in state:
                await make(force_delete=True).retract(state["main"])
                for m in state["main"].extra.get("media", {}).values():
                    await http.delete(f"{site}/wp-json/wp/v2/media/{m['id']}", params={"force": "true"},
                                      auth=("publisher", creds["publisher"]))
            for term in await rest("categories", slug=f"check-{run}"):
                await http.delete(f"{site}/wp-json/wp/v2/categories/{term['id']}", params={"force": "true"},
                                  auth=("publisher", creds["publisher"]))

    print(f"WordPress {creds.get('wp_version')} (PHP {creds.get('php_version')}) at {site}\n")
    print(check.table())
    return 0 if all(r[1] for r in check.rows) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
