"""Reviewer accounts and the review rules, on a real store (SQLite, and PostgreSQL for the migration):
passwords, tokens, sessions, and every rule of publisher/review/rules.py through the Review API the CLI
and the web desk share."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from argon2 import PasswordHasher

from publisher.clock import FrozenClock
from publisher.config.settings import Config, parse_config
from publisher.model import RevisionState
from publisher.review.accounts import Account, AccountError, Accounts
from publisher.review.chain import Review, ReviewError, findings_for
from publisher.store.db import Store

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse 安全"


def shipped_config(tmp: Path, **review: Any) -> Config:
    data = yaml.safe_load((ROOT / "config.yaml").read_text("utf-8"))
    data["store"] = {"url": f"sqlite:///{tmp}/var/p.db"}
    data["review"] = {**data["review"], **review}
    return parse_config(data, base_dir=tmp, adapters=False, env={})


class World:
    def __init__(self, tmp: Path, url: str | None = None, **review: Any) -> None:
        self.config = shipped_config(tmp, **review)
        self.clock = FrozenClock(datetime(2015, 3, 18, 1, 0, tzinfo=UTC))
        self.store = Store.open(url or self.config.store_url)
        # argon2id with light parameters, so that the tests' many hashes cost little; the shipped defaults
        # (argon2-cffi's) are what the CLI and the daemon use, and what the CLI tests run
        self.accounts = Accounts(self.store, self.clock, roles=self.config.roles,
                                 session_ttl=self.config.review.session_ttl,
                                 hasher=PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1))
        self.review = Review(self.store, self.config, self.clock)

    def person(self, name: str, *roles: str, display: str | None = None) -> Account:
        return self.accounts.add(name, display or name, roles, f"{name}@bureau.example", PASSWORD)

    def drop(self, item_id: str, category: str, *, body: str = "正文。", author: str | None = None,
             retract: bool = False, title: str = "标题") -> RevisionState:
        """A revision as intake stores it (the same fields and the same settle)."""
        with self.store.tx() as conn:
            rid, _ = self.store.add_revision(conn, {
                "item_id": item_id, "title": title, "category": category, "body": body, "summary": None,
                "doc_date": date(2015, 3, 18), "source": None, "author": author, "publish_at": None,
                "channels": ["bureau_site"], "attachments": [], "retract": retract,
                "findings": [] if retract else findings_for(self.config, title, body),
                "state": RevisionState.REVIEW, "file_name": f"{item_id}.md", "file_sha256": None}, self.clock.now())
            return self.review.settle(conn, rid)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


# --- accounts ---------------------------------------------------------------------------------------


def test_passwords_are_argon2_hashes_and_verify(world: World) -> None:
    """The password is stored as an argon2id hash only; a wrong password, an unknown name and a disabled
    account all get None."""
    li = world.person("li", "section_chief", display="李科长")
    assert li == Account("li", "李科长", frozenset({"section_chief"}), True, "li@bureau.example")
    with world.store.read() as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM accounts WHERE name = 'li'")).scalar()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert world.accounts.verify_password("li", PASSWORD) == li
    assert world.accounts.verify_password("li", PASSWORD + "x") is None
    assert world.accounts.verify_password("nobody", PASSWORD) is None
    assert world.accounts.verify_password("", "") is None
    assert world.accounts.verify_password("li", "\ud800口令") is None  # a lone surrogate from a form: no error
    assert world.accounts.verify_password("李科长 x", PASSWORD) is None
    world.accounts.disable("li")
    assert world.accounts.verify_password("li", PASSWORD) is None


def test_account_input_is_checked_in_words(world: World) -> None:
    world.person("li", "section_chief")
    with pytest.raises(AccountError, match="exists already"):
        world.person("li", "section_chief")
    with pytest.raises(AccountError, match="unknown role"):
        world.person("wang", "boss")
    with pytest.raises(AccountError, match="no spaces"):
        world.person("wang fa", "legal")
    with pytest.raises(AccountError, match="8 to 1024 characters"):
        world.accounts.add("zhao", "赵局长", ["director"], None, "short")
    with pytest.raises(AccountError, match="no account"):
        world.accounts.set_roles("ghost", ["legal"])
    assert world.accounts.set_roles("li", ["legal", "section_chief"]).roles == {"legal", "section_chief"}
    assert [a.name for a in world.accounts.list()] == ["li"]


def test_a_token_is_shown_once_and_stored_hashed(world: World) -> None:
    world.person("li", "section_chief")
    token = world.accounts.issue_token("li")
    with world.store.read() as conn:
        assert token not in str(conn.execute(sa.text("SELECT * FROM accounts")).all())
    assert world.accounts.by_token(token).name == "li"
    assert world.accounts.by_token(token[:-1]) is None and world.accounts.by_token("安监局口令2015") is None
    newer = world.accounts.issue_token("li")  # the previous token stops working
    assert world.accounts.by_token(token) is None and world.accounts.by_token(newer).name == "li"
    world.accounts.disable("li")
    assert world.accounts.by_token(newer) is None


def test_sessions_expire_close_and_end_with_the_account(world: World) -> None:
    world.person("li", "section_chief")
    sid = world.accounts.open_session("li", "10.0.0.7")
    assert world.accounts.session(sid).name == "li"
    assert world.accounts.session(sid + "x") is None
    world.clock.advance(world.config.review.session_ttl)
    assert world.accounts.session(sid) is None  # expired
    sid = world.accounts.open_session("li", "10.0.0.7")
    world.accounts.close_session(sid)
    assert world.accounts.session(sid) is None  # logged out
    sid = world.accounts.open_session("li", "10.0.0.7")
    world.accounts.set_password("li", "another password")
    assert world.accounts.session(sid) is None  # a new password ends every session
    sid = world.accounts.open_session("li", "10.0.0.7")
    world.accounts.disable("li")
    assert world.accounts.session(sid) is None
    actions = [e.action for e in world.store.audit_log()]
    assert {"login", "logout", "account_added", "password_changed", "account_disabled"} <= set(actions)
    assert "10.0.0.7" in str([e.detail for e in world.store.audit_log() if e.action == "login"])


# --- the rules ------------------------------------------------------------------------------------------


def test_sign_off_needs_an_enabled_account_holding_the_role(world: World) -> None:
    li = world.person("li", "section_chief")
    zhang = world.person("zhang", "deputy_director")
    world.drop("n-1", "notices")
    with pytest.raises(ReviewError, match="may not sign as section_chief"):
        world.review.approve("n-1", zhang)
    with pytest.raises(ReviewError, match="waits for section_chief"):
        world.review.approve("n-1", zhang, role="deputy_director")
    stranger = Account("stranger", "路人", frozenset({"section_chief"}), True, None)  # not in the store
    with pytest.raises(ReviewError, match="unknown or disabled"):
        world.review.approve("n-1", stranger)
    world.accounts.disable("li")
    with pytest.raises(ReviewError, match="unknown or disabled"):
        world.review.approve("n-1", li)  # the object still says enabled; the store does not
    world.accounts.enable("li")
    assert world.review.approve("n-1", li, remote="10.0.0.7") == RevisionState.REVIEW  # role defaults to the step
    assert world.review.approve("n-1", zhang) == RevisionState.APPROVED
    approve = [e for e in world.store.audit_log("n-1") if e.action == "approve"]
    assert [e.actor for e in approve] == ["zhang", "li"] and approve[1].detail["remote"] == "10.0.0.7"


def test_separation_of_duties_one_account_one_step(tmp_path: Path) -> None:
    world = World(tmp_path)
    both = world.person("both", "section_chief", "deputy_director")
    world.drop("n-1", "notices")
    world.review.approve("n-1", both)
    with pytest.raises(ReviewError, match="separation of duties"):
        world.review.approve("n-1", both)
    relaxed = World(tmp_path / "relaxed", separation_of_duties=False)
    both = relaxed.person("both", "section_chief", "deputy_director")
    relaxed.drop("n-1", "notices")
    relaxed.review.approve("n-1", both)
    assert relaxed.review.approve("n-1", both) == RevisionState.APPROVED


def test_the_author_cannot_sign_or_override(world: World) -> None:
    """The issue's careless editor: the author of an accident report cannot sign it nor release its finding."""
    zhao = world.person("zhao", "section_chief", "legal", "director", display="赵局长")
    world.drop("a-1", "accidents", author="赵局长")
    with pytest.raises(ReviewError, match="is the author"):
        world.review.approve("a-1", zhao)
    world.drop("s-1", "updates", author="zhao", body="联系电话 13812345678")
    with pytest.raises(ReviewError, match="is the author"):
        world.review.override("s-1", zhao, reason="我写的，没问题")
    assert world.store.revision("s-1").state == RevisionState.BLOCKED


def test_override_needs_a_configured_role(world: World) -> None:
    li = world.person("li", "section_chief")
    wang = world.person("wang", "legal")
    world.drop("s-1", "updates", body="联系电话 13812345678")
    with pytest.raises(ReviewError, match="override_roles"):
        world.review.override("s-1", li, reason="已核实")
    assert [w.item_id for w in world.review.waiting(wang)] == ["s-1"]  # in the queue of those who may release it
    assert world.review.waiting(li) == []
    assert world.review.override("s-1", wang, reason="已核实，为单位值班电话") == RevisionState.APPROVED
    entry = next(e for e in world.store.audit_log("s-1") if e.action == "override")
    assert entry.actor == "wang" and entry.detail["role"] == "legal"


def test_an_edit_cannot_lower_the_chain(world: World) -> None:
    """An accident report re-dropped as `updates` (no sign-off) still needs the four sign-offs."""
    people = [world.person(n, r) for n, r in [("li", "section_chief"), ("zhang", "deputy_director"),
                                              ("wang", "legal"), ("zhao", "director")]]
    assert world.drop("a-1", "accidents") == RevisionState.REVIEW
    world.review.approve("a-1", people[0])
    assert world.drop("a-1", "updates") == RevisionState.REVIEW  # before the fix: approved at once
    states = [world.review.approve("a-1", p) for p in people]
    assert states[-1] == RevisionState.APPROVED
    # and a third revision, in `updates` again, still needs the stricter chain
    assert world.drop("a-1", "updates") == RevisionState.REVIEW
    assert world.drop("u-1", "updates") == RevisionState.APPROVED  # an item that never was stricter


def test_a_queued_retraction_waits_for_a_retract_role(world: World) -> None:
    """`retract: true` with `author: 局长` takes nothing down until a retract_roles account signs it."""
    li = world.person("li", "section_chief")
    zhao = world.person("zhao", "director", display="赵局长")
    world.drop("u-1", "updates")
    assert world.drop("u-1", "updates", retract=True, author="局长") == RevisionState.REVIEW
    assert "retract" not in [e.action for e in world.store.audit_log("u-1")]  # nothing planned yet
    waiting = world.review.waiting(zhao)
    assert [(w.item_id, w.retract, w.may_sign) for w in waiting] == [("u-1", True, ("director",))]
    assert world.review.waiting(li) == []
    with pytest.raises(ReviewError, match="retract_roles"):
        world.review.approve("u-1", li)
    assert world.review.approve("u-1", zhao) == RevisionState.APPROVED
    assert next(e for e in world.store.audit_log("u-1") if e.action == "retract").actor == "zhao"


def test_retract_on_request_needs_a_retract_role(world: World) -> None:
    li = world.person("li", "section_chief")
    zhao = world.person("zhao", "director")
    world.drop("u-1", "updates")
    with pytest.raises(ReviewError, match="retract_roles"):
        world.review.retract("u-1", li)
    assert world.review.retract("u-1", zhao, reason="信息有误") == RevisionState.APPROVED


def test_batch_approve_names_each_refusal_and_signs_the_rest(world: World) -> None:
    li = world.person("li", "section_chief")
    for n in range(5):
        world.drop(f"g-{n}", "guides")
    world.drop("n-1", "laws")  # waits for legal, not for li
    out = world.review.approve_many([f"g-{n}" for n in range(5)] + ["n-1", "nope"], li)
    assert [o.ok for o in out] == [True] * 5 + [False, False]
    assert all(o.state == RevisionState.APPROVED for o in out[:5])
    assert "may not sign as legal" in out[5].reason and "no item" in out[6].reason
    assert sum(e.action == "approve" for e in world.store.audit_log()) == 5


def test_rejection_leaves_the_editor_a_note(world: World) -> None:
    li = world.person("li", "section_chief", display="李科长")
    world.drop("n-1", "notices", title="关于开展检查的通知")
    world.clock.advance(timedelta(hours=1))
    with pytest.raises(ReviewError, match="reason"):
        world.review.reject("n-1", li, " ")
    world.review.reject("n-1", li, "附件缺失，请补充", remote="10.0.0.7")
    note = (world.config.queue_dir / "returned" / "n-1.r1.txt").read_text("utf-8")
    assert "退回人：li (李科长)" in note and "原因：附件缺失，请补充" in note and "2015-03-18 10:00" in note
    assert "Returned by: li (李科长)" in note and "Reason: 附件缺失，请补充" in note
    assert world.store.revision("n-1").state == RevisionState.REJECTED


def test_config_names_only_known_roles(tmp_path: Path) -> None:
    from publisher.config.settings import ConfigError

    with pytest.raises(ConfigError, match="review.override_roles: role 'boss' is not defined"):
        shipped_config(tmp_path, override_roles=["boss"])


# --- the migration ----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'var' / 'p.db'}"


def test_migration_0007_keeps_every_row(tmp_path: Path, store_url: str) -> None:
    """A store at 0006 holding revisions, sign-offs and audit rows is upgraded: nothing is lost, and the
    accounts, sessions and notices tables work."""
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    import publisher.store
    from publisher.store.db import make_engine

    engine = make_engine(store_url)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(publisher.store.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
    old = Store(engine)
    now = datetime(2015, 3, 18, 1, 0, tzinfo=UTC)
    with old.tx() as conn:
        rid, _ = old.add_revision(conn, {
            "item_id": "n-1", "title": "标题", "category": "notices", "body": "正文", "summary": None,
            "doc_date": None, "source": None, "author": "李科长", "publish_at": None, "channels": [],
            "attachments": [], "retract": False, "findings": [], "state": "review",
            "file_name": "n-1.md", "file_sha256": None}, now)
        old.add_approval(conn, rid, "approve", "李科长", now, role="section_chief")
        old.audit(conn, now, "李科长", "approve", item_id="n-1", revision=1, role="section_chief")
    engine.dispose()
    world = World(tmp_path, url=store_url)
    with world.store.read() as conn:
        head = ScriptDirectory.from_config(cfg).get_current_head()  # 0007 and every migration after it
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head
        assert conn.execute(sa.text("SELECT count(*) FROM revisions")).scalar() == 1
    assert [(a.by, a.role) for a in world.store.approvals(rid)] == [("李科长", "section_chief")]
    assert [e.actor for e in world.store.audit_log("n-1")] == ["李科长"]
    zhang = world.person("zhang", "deputy_director")
    assert world.accounts.session(world.accounts.open_session("zhang", None)) == zhang
    assert world.review.approve("n-1", zhang) == RevisionState.APPROVED  # the old sign-off still counts
    world.store.close()


def test_a_newer_revision_is_not_signed_unseen(world: World) -> None:
    """The desk sends the revision the reviewer read: when a newer one arrived meanwhile, nothing is signed."""
    li = world.person("li", "section_chief")
    world.drop("g-1", "guides", body="第一版。")
    world.drop("g-1", "guides", body="第二版。")
    out = world.review.approve_many(["g-1"], li, revisions={"g-1": 1})
    assert not out[0].ok and "newer revision (2)" in out[0].reason
    with pytest.raises(ReviewError, match="newer revision"):
        world.review.reject("g-1", li, "不行", revision=1)
    assert world.review.approve("g-1", li, revision=2) == RevisionState.APPROVED
