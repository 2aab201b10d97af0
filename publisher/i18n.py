"""The fixed words of the lag report and the dashboard, in zh-CN (the default) and en.

Names of channels, categories and roles are not here: they come from config.yaml.
"""

from __future__ import annotations

from datetime import timedelta

_STRINGS: dict[str, tuple[str, str]] = {  # key: (zh-CN, en)
    "title": ("发布延迟", "Publishing lag"),
    "generated": ("生成于", "Generated"),
    "report_age": ("{s} 秒前计算", "computed {s} s ago"),
    "channel": ("渠道", "Channel"),
    "type": ("类型", "Type"),
    "sla": ("时限", "SLA"),
    "status": ("状态", "Status"),
    "on_time": ("按时", "on time"),
    "late": ("超时", "late"),
    "late_count": ("超时条数", "Late"),
    "pending": ("待发", "Pending"),
    "retrying": ("重试中", "Retrying"),
    "failed": ("失败", "Failed"),
    "manual": ("待人工", "Manual"),
    "p50": ("中位延迟", "p50 lag"),
    "p95": ("95%延迟", "p95 lag"),
    "max": ("最大延迟", "Max lag"),
    "last_live": ("最近上线", "Last live"),
    "window": ("统计区间", "Window"),
    "late_items": ("超时条目", "Late items"),
    "no_late": ("没有超时条目。", "Nothing is late."),
    "lost_items": ("上线后被撤下的条目", "Taken down after going live"),
    "lost_at": ("发现撤下", "Found taken down"),
    "was_at": ("原链接", "Was at"),
    "item": ("条目", "Item"),
    "state": ("发送状态", "State"),
    "due": ("应发时间", "Due"),
    "lag": ("延迟", "Lag"),
    "over_sla": ("超出时限", "Over SLA"),
    "attempts": ("尝试次数", "Attempts"),
    "last_error": ("最近错误", "Last error"),
    "retry": ("重试", "Retry"),
    "retried": ("已重新排队 {n} 条。", "{n} deliveries re-queued."),
    "freshness": ("更新及时性", "Freshness"),
    "no_freshness": ("各渠道、栏目均在期限内有更新。", "Every channel and category is fresh."),
    "category": ("栏目", "Category"),
    "whole_channel": ("（整个渠道）", "(whole channel)"),
    "threshold": ("期限", "Threshold"),
    "age": ("距今", "Age"),
    "fresh_ok": ("正常", "ok"),
    "fresh_warning": ("即将超期", "warning"),
    "fresh_breached": ("已超期", "breached"),
    "fresh_never": ("从未更新", "never"),
    "deadlines": ("法定公开期限", "Legal deadline"),
    "no_deadlines": ("没有临近或超过法定期限的条目。", "No item is near or past its legal deadline."),
    "doc_date": ("成文日期", "Document date"),
    "deadline": ("公开期限", "Deadline"),
    "workdays_left": ("剩余工作日", "Working days left"),
    "at_risk": ("临近期限", "at risk"),
    "overdue": ("已超期", "overdue"),
    "calendar_guess": ("（节假日安排未知，按周一至周五计）", "(holidays unknown: Monday–Friday assumed)"),
    "history": ("延迟走势", "Lag over time"),
    "source_daemon": ("由运行中的守护进程（{listen}）提供。", "From the running daemon at {listen}."),
    "source_store_down": ("直接读取存储：{listen} 上没有守护进程应答。守护进程未运行时，不会接收或发送任何条目。",
                          "Read from the store: no daemon answered at {listen}. While it is not running, nothing is "
                          "taken in or sent."),
    "source_store_slow": ("直接读取存储：{listen} 上的守护进程 10 秒内没有应答（可能过于繁忙）。",
                          "Read from the store: the daemon at {listen} did not answer within 10 s (it may be overloaded)."),
    "source_store_other_config": ("直接读取存储：{listen} 上的守护进程使用的是另一份或修改前的 config.yaml；"
                                  "修改配置后请重启守护进程。",
                                  "Read from the store: the daemon at {listen} runs on another, or an older, "
                                  "config.yaml; restart it after editing the config."),
    "source_store_refused": ("直接读取存储：{listen} 上的守护进程拒绝了请求（{why}）。",
                             "Read from the store: the daemon at {listen} refused the request ({why})."),
    "history_note": ("每段时间内应发条目的95%延迟（对数刻度），虚线为时限。",
                     "p95 lag of the deliveries due in each interval (log scale); dashed: the SLA."),
    "never": ("从未", "never"),
    "login": ("登录", "Log in"),
    "token": ("访问令牌", "Access token"),
    "bad_token": ("令牌不正确。", "That token is not right."),
    "no_token": ("服务监听在非本机地址，但 config.yaml 未设置 web.token，拒绝访问。",
                 "The server listens off loopback but config.yaml sets no web.token; access refused."),
    "language": ("English", "中文"),
    "state_waiting": ("等待链接", "waiting"),
    "state_pending": ("待发", "pending"),
    "state_sending": ("发送中", "sending"),
    "state_sent": ("已发待核", "sent"),
    "state_live": ("已上线", "live"),
    "state_retrying": ("重试中", "retrying"),
    "state_failed": ("失败", "failed"),
    "state_manual": ("待人工处理", "manual"),
    "retract": ("撤回", "retraction"),
    "alert_subject": ("[发布延迟] {n} 条新告警", "[publishing lag] {n} new alert(s)"),
    "alert_late": ("{channel}：{item} 第{revision}版已超时 {lag}（时限 {sla}），状态：{state}。最近错误：{error}",
                   "{channel}: {item} r{revision} is late by {lag} (SLA {sla}), state {state}. Last error: {error}"),
    "alert_lost": ("{channel}：{item} 第{revision}版《{title}》上线后已被撤下（删除或封禁）：{reason}。原链接：{url}",
                   "{channel}: {item} r{revision} \"{title}\" was taken down after it went live (deleted or banned): "
                   "{reason}. It was at {url}"),
    "alert_fresh": ("{channel}{category}：已 {age} 没有新内容上线（期限 {threshold}），{status}。",
                    "{channel}{category}: nothing new live for {age} (threshold {threshold}): {status}."),
    "alert_fresh_never": ("{channel}{category}：尚无任何内容上线（期限 {threshold}）。",
                          "{channel}{category}: nothing has gone live yet (threshold {threshold})."),
    "alert_deadline": ("{item}《{title}》须在 {last_day} 前公开，剩余 {left} 个工作日：{status}。",
                       "{item} \"{title}\" must be public by {last_day}; {left} working day(s) left: {status}."),
    "alert_recovered_subject": ("[发布延迟] {n} 条告警已恢复", "[publishing lag] {n} alert(s) recovered"),
    "alert_recovered": ("已恢复：{text}", "Recovered: {text}"),
    "alert_more": ("……另有 {n} 条，见仪表盘。", "… and {n} more: see the dashboard."),
    # the web desk's sign-in (publisher/app/web/auth.py); the desk's own words are in publisher/app/web/desk_words.py
    "desk": ("审核台", "Review desk"),
    "desk_title": ("信息公开审核台", "Review desk"),
    "account": ("账号", "Account"),
    "password": ("密码", "Password"),
    "logout": ("退出登录", "Log out"),
    "bad_login": ("账号或密码不正确。", "That account name or password is not right."),
    "login_throttled": ("登录失败次数过多，请 {m} 分钟后再试。", "Too many failed logins: try again in {m} minute(s)."),
    "login_token_hint": ("管理员可不填账号，以访问令牌登录（仅限仪表盘）。",
                         "Admins may leave the account empty and give the access token (dashboard only)."),
    # review notifications (publisher/app/notify.py)
    "digest_subject": ("[待审核] {role}：{n} 条稿件等待您签批", "[review] {role}: {n} item(s) wait for your sign-off"),
    "digest_line": ("{item} 第{revision}版《{title}》（{category}），{since} 起等待，距法定期限 {left} 个工作日",
                    "{item} r{revision} \"{title}\" ({category}), waiting since {since}, {left} working day(s) "
                    "to the legal deadline"),
    "digest_more": ("……另有 {n} 条，请到审核台查看：{url}", "… and {n} more: see the review desk at {url}"),
    "digest_footer": ("请登录审核台签批：{url}", "Sign them off at the review desk: {url}"),
    "escalation_subject": ("[审核催办] {n} 条稿件临近法定公开期限", "[review escalation] {n} item(s) near the legal deadline"),
    "escalation_line": ("{item} 第{revision}版《{title}》仍等待 {role} 签批，须在 {last_day} 前公开，剩余 {left} 个工作日",
                        "{item} r{revision} \"{title}\" still waits for {role}; it must be public by {last_day}, "
                        "{left} working day(s) left"),
    # the lag report's review section: the review queue and the screen's findings on it
    "review_line": ("审核：待审 {waiting} 条（保密审查拦下 {blocked} 条）；审查发现须处理 {blocking} 处、提示 {advisory} 处",
                    "Review: {waiting} waiting, {blocked} held by the screen; "
                    "findings: {blocking} blocking, {advisory} advisory"),
    "review_kinds": ("审查发现：{kinds}", "Findings: {kinds}"),
    "finding_classified_marking": ("密级标志", "classified marking"),
    "finding_internal_marking": ("内部资料标志", "internal marking"),
    "finding_resident_id": ("身份证号码", "ID number"),
    "finding_mobile_number": ("手机号码", "mobile number"),
    "finding_term": ("敏感词", "sensitive term"),
    "finding_wording": ("用词错误", "wrong form"),
    "finding_forbidden": ("禁用说法", "forbidden expression"),
    "finding_link": ("链接问题", "link problem"),
    "finding_unknown": ("其他", "other"),
    # --- disclosure statistics (publisher/stats/, `publisher report`, /reports) ---
    "rpt_annual": ("{year}年政府信息公开统计", "Disclosure statistics {year}"),
    "rpt_link": ("公开统计", "Disclosure statistics"),
    "rpt_by_category": ("按栏目", "By category"),
    "rpt_by_month": ("按栏目和月份", "By category and month"),
    "rpt_by_channel": ("按渠道", "By channel"),
    "rpt_items": ("条数", "Items"),
    "rpt_total": ("合计", "Total"),
    "rpt_summary": ("概况", "Summary"),
    "rpt_figure": ("项目", "Figure"),
    "rpt_value": ("数量", "Value"),
    "rpt_disclosed": ("公开条目", "Items disclosed"),
    "rpt_edits": ("修改后重发", "Edits sent"),
    "rpt_retractions": ("撤回", "Retractions"),
    "rpt_blocked": ("保密审查拦截", "Blocked by the confidentiality screen"),
    "rpt_released": ("其中经审核放行后公开", "of which released by a reviewer and disclosed"),
    "rpt_rejected": ("审核退回", "Rejected in review"),
    "rpt_deadline": ("法定期限（{n}个工作日）", "Legal deadline ({n} working days)"),
    "rpt_on_time": ("按期公开", "Public in time"),
    "rpt_late": ("超期公开", "Public late"),
    "rpt_worst": ("最长用时（工作日）", "Longest (working days)"),
    "rpt_worst_item": ("最长用时条目", "Slowest item"),
    "rpt_national": ("主动公开政府信息情况（国办公开办函〔2021〕30号）",
                     "Government information disclosed on the bureau's initiative (national format, 2021)"),
    "rpt_content": ("信息内容", "Content"),
    "rpt_fill_in": ("（人工填写）", "(fill in)"),
    "rpt_fill_note": ("标“（人工填写）”的格子存储中没有数据，请人工填写。",
                      "Cells marked \"(fill in)\" are not in the store: a person fills them in."),
    "rpt_month": ("{m}月", "{abbr}"),
    "rpt_districts": ("区县工作动态统计（{first} 至 {last}）", "District items, {first} to {last}"),
    "rpt_district": ("区县", "District"),
    "rpt_received": ("收到", "Received"),
    "rpt_no_items": ("这段时间没有条目。", "No items in this period."),
    "rpt_chart": ("各栏目逐月公开条数", "Items disclosed per month, by category"),
    "rpt_year": ("年度", "Year"),
    "rpt_show": ("查看", "Show"),
    "rpt_from": ("起", "From"),
    "rpt_to": ("止", "To"),
    "rpt_download": ("下载", "Download"),
    "rpt_calendar_guess": ("（部分年份节假日安排未知，按周一至周五计）", "(some years' holidays unknown: Monday–Friday assumed)"),
    # district sources (publisher/intake/sources.py)
    "sources": ("区县信息源", "District sources"),
    "district": ("区县", "District"),
    "interval": ("抓取间隔", "Interval"),
    "last_success": ("最近成功", "Last success"),
    "entries": ("源内条目", "Entries"),
    "imported": ("已导入", "Imported"),
    "src_ok": ("正常", "ok"),
    "src_error": ("出错", "error"),
    "src_silent": ("长时间无更新", "silent"),
    "src_never": ("尚未抓取", "not polled yet"),
}


def normalize(locale: str | None, default: str = "zh-CN") -> str:
    """`en`, `en-US` → en; `zh`, `zh-Hans` … → zh-CN; anything else → the default."""
    if not locale:
        return default
    low = locale.lower()
    if low.startswith("en"):
        return "en"
    if low.startswith("zh"):
        return "zh-CN"
    return default


def t(key: str, locale: str, **fields: object) -> str:
    zh, en = _STRINGS[key]
    text = en if locale == "en" else zh
    return text.format(**fields) if fields else text


def duration(td: timedelta | None, locale: str) -> str:
    """`3天4小时` / `3d 4h`: rounded to the two largest units, for a person reading a table."""
    if td is None:
        return "—"
    secs = int(abs(td.total_seconds()))
    sign = "-" if td.total_seconds() < 0 else ""
    units = (("天", "d", 86400), ("小时", "h", 3600), ("分", "m", 60), ("秒", "s", 1))
    first = next((i for i, u in enumerate(units) if secs >= u[2]), len(units) - 1)
    parts: list[str] = []
    for zh, en, size in units[first:first + 2]:
        value, secs = divmod(secs, size)
        if value or not parts:
            parts.append(f"{value}{en if locale == 'en' else zh}")
    return sign + (" " if locale == "en" else "").join(parts)


class Translator:
    """Bound to one locale, for templates: `_("late")`, `_.d(lag)`."""

    def __init__(self, locale: str) -> None:
        self.locale = locale

    def __call__(self, key: str, **fields: object) -> str:
        return t(key, self.locale, **fields)

    def d(self, td: timedelta | None) -> str:
        return duration(td, self.locale)
