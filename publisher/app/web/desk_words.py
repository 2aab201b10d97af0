"""The review desk's fixed words in zh-CN (the default) and en; the rest come from publisher/i18n.py.

Names of categories, roles and channels are not here: they come from config.yaml.
"""

from __future__ import annotations

from publisher import i18n

WORDS: dict[str, tuple[str, str]] = {  # key: (zh-CN, en)
    "my_queue": ("待我审核", "My queue"),
    "queue_empty": ("没有等待您审核的稿件。", "Nothing waits for your sign-off."),
    "signed_in_as": ("当前用户", "Signed in as"),
    "roles": ("角色", "Roles"),
    "title_col": ("标题", "Title"),
    "submitter": ("提交人", "Submitted by"),
    "waiting_since": ("等待自", "Waiting since"),
    "findings": ("筛查提示", "Findings"),
    "next_step": ("待签环节", "Next step"),
    "days_left": ("距法定期限（工作日）", "Working days to deadline"),
    "approve_ticked": ("批量签发所选稿件", "Approve the ticked revisions"),
    "tick": ("选择", "Tick"),
    "open": ("查看", "Open"),
    "blocked": ("已拦截", "blocked"),
    "approved_n": ("已签发 {n} 条。", "{n} approved."),
    "refused_n": ("{n} 条未能签发：", "{n} could not be approved:"),
    "nothing_ticked": ("没有选择任何稿件。", "No revision was ticked."),
    "revision": ("第 {n} 版", "revision {n}"),
    "state_review": ("待审核", "in review"),
    "state_blocked": ("被筛查拦截", "blocked by the screen"),
    "state_approved": ("已签发", "approved"),
    "state_rejected": ("已退回", "returned"),
    "state_superseded": ("已被新版本取代", "superseded"),
    "as_channel": ("各渠道呈现", "As each channel will show it"),
    "characters": ("{n}/{limit} 字（按平台计）", "{n}/{limit} characters (as the platform counts)"),
    "link": ("链接", "Link"),
    "no_link_yet": ("（门户网站发布后的文章链接）", "(the site's article link, once published)"),
    "feed_entry": ("订阅源条目", "Feed entry"),
    "no_findings": ("筛查未发现问题。", "The screen found nothing."),
    "finding_in": ("位于：{field}", "In: {field}"),
    "not_in_view": ("（未出现在渲染后的正文中）", "(not in the rendered text)"),
    "diff": ("与在线版本的差异", "Changes against the live revision"),
    "no_live": ("这是首个版本，尚无在线版本。", "This is the first revision: nothing is live yet."),
    "attachments": ("附件", "Attachments"),
    "no_attachments": ("无附件。", "No attachments."),
    "history": ("历史", "History"),
    "revisions": ("版本", "Revisions"),
    "signoffs": ("签发记录", "Sign-offs"),
    "deliveries": ("发送记录", "Deliveries"),
    "audit": ("操作日志", "Audit log"),
    "approve_as": ("签发（{role}）", "Approve as {role}"),
    "reject": ("退回修改", "Return for changes"),
    "reason": ("原因", "Reason"),
    "override": ("解除拦截", "Override the screen"),
    "not_signable": ("您当前不能签发此稿件。", "You cannot sign this revision now."),
    "done_approve": ("已签发：{item}（现状态：{state}）", "Approved: {item} (now {state})"),
    "done_reject": ("已退回：{item}，编辑将在 queue/returned/ 看到说明。",
                    "Returned: {item}; the editor finds a note in queue/returned/."),
    "done_override": ("已解除拦截：{item}（现状态：{state}）", "Overridden: {item} (now {state})"),
    "refused": ("未能执行：{why}", "Not done: {why}"),
    "need_account": ("审核台需要以审核人账号登录（访问令牌只能查看仪表盘）。",
                     "The review desk needs a reviewer account (the access token opens the dashboard only)."),
    "no_item": ("没有这个条目。", "No such item."),
    "field_title": ("标题", "title"),
    "field_body": ("正文", "body"),
    "field_summary": ("摘要", "summary"),
    "field_source": ("来源", "source"),
    "field_author": ("作者", "author"),
    "field_tags": ("标签", "tags"),
    "field_attachment": ("附件名", "attachment name"),
    "level_blocking": ("阻止发布", "blocking"),
    "level_advisory": ("提示", "advisory"),
    "retraction": ("撤稿申请", "retraction"),
    "dashboard": ("发布延迟仪表盘", "Lag dashboard"),
    "when": ("时间", "When"),
    "who": ("操作人", "Who"),
    "what": ("操作", "What"),
}


class Words(i18n.Translator):
    """The desk's words first, then the dashboard's (login, language switch, states)."""

    def __call__(self, key: str, **fields: object) -> str:
        pair = WORDS.get(key)
        if pair is None:
            return super().__call__(key, **fields)
        text = pair[1] if self.locale == "en" else pair[0]
        return text.format(**fields) if fields else text

    def has(self, key: str) -> bool:
        return key in WORDS
