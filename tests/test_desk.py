"""The review desk over a real loopback server and a real store: login required on loopback, my queue in
order of urgency, the item page (each channel's rendering, findings marked, the diff, history), the
actions and batch sign-off under the review module's rules."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher

from publisher.app.web.context import WebContext
from publisher.clock import FrozenClock
from publisher.model import RevisionState
from publisher.review.accounts import Accounts
from publisher.review.chain import Review, findings_for
from publisher.store.db import Store
from tests.harness import free_port, web_server
from tests.test_accounts import PASSWORD, World, shipped_config
from tests.test_web_security import csrf_of


@dataclass
class Desk:
    world: World
    url: str

    def login(self, name: str) -> httpx.Client:
        c = httpx.Client(base_url=self.url, follow_redirects=False, timeout=10)
        r = c.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": csrf_of(c.get("/login").text)})
        assert r.status_code == 303, r.text[:300]
        return c


class QuickWorld(World):
    """test_accounts' world with a light argon2 hasher: the same code path, a fraction of the CPU per test."""

    def __init__(self, tmp: Path) -> None:
        self.config = shipped_config(tmp)
        self.clock = FrozenClock(datetime(2015, 3, 18, 1, 0, tzinfo=UTC))
        self.store = Store.open(self.config.store_url)
        self.accounts = Accounts(self.store, self.clock, roles=self.config.roles, hasher=LIGHT)
        self.review = Review(self.store, self.config, self.clock)


LIGHT = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    world = QuickWorld(tmp_path)
    port = free_port()
    ctx = WebContext(config=world.config, store=world.store, clock=world.clock, accounts=world.accounts,
                     review=world.review)
    with web_server(ctx, port) as url:
        yield Desk(world, url)
    world.store.close()


def drop(world: World, item_id: str, category: str, *, title: str, body: str = "正文。", doc: date | None = None,
         author: str | None = None) -> RevisionState:
    """A revision stored as intake stores it, routed by its category."""
    with world.store.tx() as conn:
        rid, _ = world.store.add_revision(conn, {
            "item_id": item_id, "title": title, "category": category, "body": body, "summary": None,
            "doc_date": doc or date(2015, 3, 18), "source": None, "author": author, "publish_at": None,
            "channels": [], "attachments": [], "retract": False,
            "findings": findings_for(world.config, title, body),
            "state": RevisionState.REVIEW, "file_name": f"{item_id}.md", "file_sha256": None}, world.clock.now())
        return world.review.settle(conn, rid)


def test_every_desk_route_needs_an_account_on_loopback_too(desk: Desk) -> None:
    """On 127.0.0.1, the desk still sends a stranger to the login page, and posts need a session and a token."""
    with httpx.Client(base_url=desk.url, follow_redirects=False) as c:
        assert c.get("/desk").headers["location"] == "/login?next=/desk"
        assert c.get("/desk/item/x").status_code == 303
        assert c.post("/desk/approve", data={"item_id": "x"}).status_code == 303
        bad = c.post("/login", data={"name": "nobody", "password": "x" * 9, "csrf_token": csrf_of(c.get("/login").text)})
        assert bad.status_code == 401 and "账号或密码不正确" in bad.text


def test_my_queue_most_urgent_first_with_what_a_reviewer_needs(desk: Desk) -> None:
    """My queue lists what waits for my roles, fewest working days to the deadline first, with category, title,
    submitter, waiting since and the number of findings; others' steps are not in it."""
    w = desk.world
    w.person("li", "section_chief", display="李科长")
    drop(w, "2015-news-0001", "news", title="较新的要闻", doc=date(2015, 3, 17), author="办公室")
    drop(w, "2015-news-0002", "news", title="快到期的要闻", doc=date(2015, 2, 20), author="宣传科")
    drop(w, "2015-laws-0001", "laws", title="法制科的稿件")  # waits for legal, not for li
    drop(w, "2015-news-0003", "news", title="含手机号", body="联系电话13912345678。")  # blocked
    page = desk.login("li").get("/desk").text
    order = re.findall(r'class="queue-row" data-item="([^"]+)"', page)
    assert order[:2] == ["2015-news-0002", "2015-news-0001"]
    assert "2015-laws-0001" not in order
    assert "安监要闻" in page and "宣传科" in page and "2015-03-18 09:00" in page
    blocked = re.search(r'data-item="2015-news-0003" data-state="blocked">(.*?)</tr>', page, re.S)
    assert blocked is not None and 'name="item_id"' not in blocked.group(1)  # nothing to tick: it needs an override
    assert re.search(r'<td class="n late">1</td>', blocked.group(1))


def test_item_page_shows_each_channel_with_the_finding_marked(desk: Desk) -> None:
    """The item page renders the site's HTML, the microblog text with its count and link and the feed entry,
    marks the screen's finding in place with its reason, and diffs an edit against the live revision."""
    w = desk.world
    w.person("li", "section_chief")
    w.person("zhao", "legal", "director")
    drop(w, "2015-news-0009", "news", title="安全检查", body="检查发现**隐患**三处。")
    w.review.approve("2015-news-0009", w.accounts.get("li"))  # revision 1 approved: live
    drop(w, "2015-news-0009", "news", title="安全检查（更正）", body="检查发现**隐患**三处，联系人13912345678。")
    c = desk.login("zhao")
    page = c.get("/desk/item/2015-news-0009").text
    assert 'data-state="blocked"' in page
    assert re.search(r'<mark class="finding finding-blocking" data-finding="0" title="[^"]*手机[^"]*">13912345678</mark>',
                     page)
    site = re.search(r'id="view-bureau_site".*?</section>', page, re.S)
    assert site is not None and "<strong>隐患</strong>" in site.group(0)
    blog = re.search(r'id="view-microblog".*?</section>', page, re.S)
    assert blog is not None and "/140" in blog.group(0) and "item-2015-news-0009" in blog.group(0)
    assert 'id="view-provincial_feed"' in page
    assert re.search(r'class="add">\+ 安全检查（更正）', page) and re.search(r'class="del">- 安全检查<', page)
    assert 'id="override"' in page and 'id="approve"' not in page  # zhao holds an override role
    token = csrf_of(page)
    done = c.post("/desk/item/2015-news-0009/override",
                  data={"reason": "号码为单位值班电话，可公开", "csrf_token": token, "revision": "2"})
    assert done.status_code == 303
    after = c.get(done.headers["location"]).text
    assert 'id="done"' in after and 'data-state="review"' in after
    assert any(e.action == "override" and e.actor == "zhao" and e.detail.get("remote") == "127.0.0.1"
               for e in w.store.audit_log("2015-news-0009"))


def test_actions_obey_the_review_rules(desk: Desk) -> None:
    """Approve signs the next step; a second step by the same account is refused with the rule in words; a
    reviewer without an override role sees no override; a rejection leaves the editor's note."""
    w = desk.world
    w.person("li", "section_chief", "deputy_director")
    drop(w, "2015-notices-0001", "notices", title="关于开展安全生产大检查的通知")
    drop(w, "2015-notices-0002", "notices", title="关于节日值班的通知")
    c = desk.login("li")
    token = csrf_of(c.get("/desk").text)
    first = c.post("/desk/item/2015-notices-0001/approve", data={"csrf_token": token, "revision": "1"})
    assert "done=" in first.headers["location"]
    second = c.post("/desk/item/2015-notices-0001/approve", data={"csrf_token": token, "revision": "1"})
    refused = c.get(second.headers["location"]).text
    assert 'id="refused"' in refused and "li" in refused
    assert 'id="override"' not in refused
    assert w.store.revision("2015-notices-0001").state == RevisionState.REVIEW
    form = {"csrf_token": token, "revision": "1"}
    assert c.post("/desk/item/2015-notices-0002/reject", data={**form, "reason": ""}).status_code == 303
    assert w.store.revision("2015-notices-0002").state == RevisionState.REVIEW  # a reason is required
    c.post("/desk/item/2015-notices-0002/reject", data={**form, "reason": "请补充检查时间"})
    assert w.store.revision("2015-notices-0002").state == RevisionState.REJECTED
    note = w.config.queue_dir / "returned" / "2015-notices-0002.r1.txt"
    assert "请补充检查时间" in note.read_text("utf-8")
    assert c.post("/desk/item/2015-notices-0002/approve", data={"revision": "1"}).status_code == 403  # no CSRF token
    assert c.post("/desk/item/2015-notices-0001/approve", data={"csrf_token": token}).status_code == 400


def test_batch_approve_names_what_it_could_not_sign(desk: Desk) -> None:
    """Ticking several revisions approves each (its own audit entry); one that cannot be signed (the author's own, an
    unknown id, one with a newer revision than the queue showed) is named with the reason and the others go through."""
    w = desk.world
    w.person("li", "section_chief")
    for n in range(3):
        drop(w, f"2015-news-{n:04d}", "news", title=f"要闻{n}")
    drop(w, "2015-news-0099", "news", title="李科长自己写的", author="li")
    c = desk.login("li")
    queue = c.get("/desk").text
    ticked = re.findall(r'name="item_id" value="([^"]+)"', queue)
    assert "1:2015-news-0099" in ticked  # listed: the rule is the review module's to say
    drop(w, "2015-news-0002", "news", title="要闻2（改）")  # revision 2 arrives after the queue was read
    page = c.post("/desk/approve", data={"item_id": [*ticked, "1:nope"], "csrf_token": csrf_of(queue)}).text
    assert "已签发 2 条" in page and "3 条未能签发" in page
    refusals = dict(re.findall(r'data-item="([^"]+)"><strong>[^<]+</strong>: ([^<]+)</li>', page))
    assert set(refusals) == {"2015-news-0099", "2015-news-0002", "nope"} and "author" in refusals["2015-news-0099"]
    assert "newer revision" in refusals["2015-news-0002"]
    for n in range(2):
        assert w.store.revision(f"2015-news-{n:04d}").state == RevisionState.APPROVED
        assert [e.actor for e in w.store.audit_log(f"2015-news-{n:04d}") if e.action == "approve"] == ["li"]
    assert w.store.revision("2015-news-0002").state == RevisionState.REVIEW
    english = c.get("/desk?lang=en").text
    assert "My queue" in english


def test_highlight_marks_in_text_only_and_escapes() -> None:
    """A finding is marked where its source text or its reader-seen form appears, never inside a tag or another
    mark, and text from the item never becomes markup."""
    from publisher.app.web.desk_views import Finding, highlight

    def finding(text: str, seen: str = "", reason: str = "密级标志") -> Finding:
        return Finding(field="body", text=text, kind="classified", level="blocking", reason=reason, sentence=reason,
                       seen=seen)

    marks = [finding("&#26426;&#23494;", seen="机密"), finding("机密文件", reason="<b>机密</b>"), finding("title")]
    html_out, found = highlight('<p title="机密">本件为机密文件，title</p>', marks, is_html=True)
    assert html_out.count("<mark") == 2 and found == {0, 2}  # the overlapping longer match at the same place: skipped
    assert '<p title="机密">' in html_out and 'title="密级标志">机密</mark>' in html_out
    text_out, _ = highlight("<script>机密文件", [marks[1]], is_html=False)
    assert "<script>" not in text_out and "&lt;script&gt;" in text_out
    assert 'title="&lt;b&gt;机密&lt;/b&gt;">机密文件</mark>' in text_out


def test_attachments_download_from_the_archive_only(desk: Desk) -> None:
    """The item page links each attachment; it downloads (never inline) from the queue's archive, and a stored path
    outside the archive is not served."""
    w = desk.world
    w.person("li", "section_chief")
    archive = w.config.queue_dir / "archive" / "2015-news-0007.md.files"
    archive.mkdir(parents=True)
    (archive / "报告.html").write_text("<script>alert(1)</script>", "utf-8")
    outside = w.config.queue_dir.parent / "secret.txt"
    outside.write_text("secret", "utf-8")
    with w.store.tx() as conn:
        rid, _ = w.store.add_revision(conn, {
            "item_id": "2015-news-0007", "title": "附件测试", "category": "news", "body": "见附件。", "summary": None,
            "doc_date": date(2015, 3, 18), "source": None, "author": None, "publish_at": None, "channels": [],
            "attachments": [{"name": "报告.html", "path": str(archive / "报告.html"), "size": 25},
                            {"name": "x.txt", "path": str(outside), "size": 6}],
            "retract": False, "findings": [], "state": RevisionState.REVIEW, "file_name": "a.md",
            "file_sha256": None}, w.clock.now())
        w.review.settle(conn, rid)
    c = desk.login("li")
    page = c.get("/desk/item/2015-news-0007").text
    assert 'href="/desk/item/2015-news-0007/file/0">报告.html</a>' in page
    got = c.get("/desk/item/2015-news-0007/file/0")
    assert got.status_code == 200 and got.text == "<script>alert(1)</script>"
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.headers["x-content-type-options"] == "nosniff"
    assert c.get("/desk/item/2015-news-0007/file/1").status_code == 404
    assert c.get("/desk/item/2015-news-0007/file/2").status_code == 404
    with httpx.Client(base_url=desk.url) as stranger:
        assert stranger.get("/desk/item/2015-news-0007/file/0").status_code == 303
