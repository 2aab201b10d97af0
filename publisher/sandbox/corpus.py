"""A deterministic corpus of item files shaped like one year of a city work-safety bureau.

The category counts are those a real city work-safety bureau gave in its 2015 annual report on
government information disclosure: agency 4 (安监机构), news 38 (安监要闻), notices 205 (公文公告),
updates 244 (安全生产动态, 127 of them from the districts), committee 242 (安委会工作), accidents 8
(事故通报), laws 13 (法律法规), guides 11 (服务指南): 765 items, 62 of them also sent to the microblog.
The text is synthetic; no person, number or company in it is real.

A few items carry content the confidentiality screen must stop (`sensitive`); with `broken` the
corpus also holds files intake must reject, and two odd but valid encodings it must accept.
`manifest.json` says which file is which, so tests and demos can check every outcome.

    python -m publisher.sandbox.corpus OUT [--scale 1.0] [--seed 2015] [--sensitive 12] [--broken]

`scale` multiplies every count; scale 10 spreads ten times the items over ten years (2015-2024).
"""

from __future__ import annotations

import argparse
import json
import math
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from publisher.review.screen import id_check_char

COUNTS = {"agency": 4, "news": 38, "notices": 205, "updates": 244, "committee": 242,
          "accidents": 8, "laws": 13, "guides": 11}
DISTRICT_UPDATES = 127
MICROBLOG = 62
MICROBLOG_PREFERENCE = ("news", "accidents", "guides", "laws", "agency")
ALL_CHANNELS = ["bureau_site", "city_portal", "provincial_feed", "microblog"]
# These categories go to the microblog by default in the shipped routing; their items that are not
# among the 62 name their channels, so the microblog count stays exact.
MICROBLOG_BY_DEFAULT = ("news", "accidents")
WECHAT_BY_DEFAULT = ("news", "accidents")  # the shipped routing sends these to the official account as well
SENSITIVE_KINDS = ("classified_marking", "internal_marking", "resident_id", "mobile_number")
FIRST_YEAR = 2015
DISTRICTS = {"张店区": "370302", "淄川区": "370303", "博山区": "370304", "临淄区": "370305",
             "周村区": "370306", "桓台县": "370321", "高青县": "370322", "沂源县": "370323"}

TOPICS = ["危险化学品", "非煤矿山", "烟花爆竹", "冶金工贸", "有限空间作业", "粉尘防爆", "液氨制冷", "建筑施工",
          "特种设备", "职业卫生", "道路交通", "人员密集场所消防"]
ACTIVITIES = ["安全生产大检查", "隐患排查治理", "打非治违", "专项整治", "安全生产标准化建设", "安全培训", "执法检查"]
HOLIDAYS = ["元旦", "春节", "清明节", "五一劳动节", "端午节", "汛期", "中秋节和国庆节", "冬季"]
ACCIDENT_KINDS = ["较大爆炸", "一般中毒窒息", "一般物体打击", "一般高处坠落", "一般机械伤害", "一般火灾", "较大坍塌"]
COMPANIES = ["一化工企业", "一陶瓷企业", "一建材企业", "一机械加工企业", "一耐火材料企业", "一铝制品企业"]
LAWS = ["中华人民共和国安全生产法", "中华人民共和国职业病防治法", "生产安全事故报告和调查处理条例",
        "危险化学品安全管理条例", "安全生产许可证条例", "烟花爆竹安全管理条例", "山东省安全生产条例",
        "生产经营单位安全培训规定", "安全生产事故隐患排查治理暂行规定", "工贸企业有限空间作业安全管理与监督暂行规定",
        "特种作业人员安全技术培训考核管理规定", "生产安全事故应急预案管理办法", "危险化学品重大危险源监督管理暂行规定"]
GUIDES = ["危险化学品经营许可证核发办事指南", "烟花爆竹经营（零售）许可证核发办事指南",
          "非煤矿山安全生产许可证办事指南", "非药品类易制毒化学品经营备案办事指南",
          "危险化学品建设项目安全条件审查办事指南", "特种作业操作证复审办事指南",
          "生产经营单位主要负责人安全资格考核办事指南", "安全生产举报投诉受理指南", "安全评价机构备案办事指南",
          "生产安全事故应急预案备案指南", "安全生产标准化三级企业评审办事指南"]
AGENCY = ["市安全生产监督管理局主要职责", "市安全生产监督管理局内设机构", "市安全生产监督管理局领导班子分工",
          "市安全生产执法监察支队职责"]
OPERATIONS = ["检维修", "有限空间清理", "设备调试", "高处安装", "物料装卸", "动火"]
SURNAMES = "王李张刘陈杨赵黄周吴孙马朱胡郭何高林"
NUMERALS = "一二三四五六七八九十"

ADDRESSEES = ["各区县安监局，高新区、文昌湖区安监局，市安委会有关成员单位：", "各区县人民政府，市政府有关部门：",
              "各有关企业：", "各区县安委会办公室："]
SENTENCES = [
    "为深入贯彻落实全市安全生产工作部署，进一步加强{topic}领域安全监管，有效防范和遏制各类生产安全事故。",
    "检查共涉及企业{n}家，发现并督促整改隐患{m}项，责令停产整顿{k}家。",
    "各单位要切实落实企业安全生产主体责任，严格执行各项规章制度，确保责任到人、措施到位。",
    "对检查中发现的问题，将依法依规严肃处理，并跟踪督办整改落实情况。",
    "下一步，将持续深化{activity}，确保全市安全生产形势持续稳定好转。",
    "会议要求，各级各部门要牢固树立安全发展理念，坚守发展决不能以牺牲人的生命为代价这条红线。",
    "{month}月份，全市共发生各类生产安全事故{k}起，同比下降{p}%，未发生较大以上事故。",
    "市安监局组成{k}个督导组，采取明查暗访、随机抽查等方式，深入企业一线开展督导检查。",
    "各区县要结合实际，制定具体实施方案，明确时间节点，层层分解任务。",
    "要加强应急值守，严格执行领导带班和24小时值班制度，确保信息畅通。",
    "企业要健全安全管理制度，加强对从业人员的安全培训。",
]
# Clean prose the screen must let through: secrecy words in sentences, 内部 in words, landlines.
TRICKY = [
    "各单位要严格遵守保密纪律，保守国家秘密和工作秘密。",
    "执法检查中要依法保护企业的商业秘密。",
    "企业要健全内部安全管理制度，开展内部审计。",
    "咨询电话：0533-{landline}。安全生产举报投诉电话：12350。",
]
ARTICLES = [
    "为了加强安全生产工作，防止和减少生产安全事故，保障人民群众生命和财产安全，制定本法。",
    "生产经营单位的主要负责人对本单位的安全生产工作全面负责。",
    "生产经营单位应当对从业人员进行安全生产教育和培训，保证从业人员具备必要的安全生产知识。",
    "生产经营单位应当建立健全生产安全事故隐患排查治理制度，采取技术、管理措施，及时发现并消除事故隐患。",
    "县级以上地方各级人民政府应当组织有关部门制定本行政区域内生产安全事故应急救援预案。",
    "负有安全生产监督管理职责的部门依法开展安全生产行政执法工作，对生产经营单位执行有关安全生产的法律、法规和"
    "国家标准或者行业标准的情况进行监督检查。",
    "安全生产监督检查人员应当忠于职守，坚持原则，秉公执法；对涉及被检查单位的技术秘密和业务秘密，应当为其保密。",
    "生产经营单位发生生产安全事故后，事故现场有关人员应当立即报告本单位负责人。",
]
ITEMS_CN = ["提高思想认识，加强组织领导", "突出工作重点，全面排查隐患", "强化执法检查，严厉打击非法违法行为",
            "落实应急措施，提升应急处置能力", "加强宣传教育，营造良好氛围", "严格信息报送，确保及时准确"]


def _title(rng: random.Random, cat: str, d: date, source: str | None, j: int) -> str:
    topic, activity = rng.choice(TOPICS), rng.choice(ACTIVITIES)
    district = source or rng.choice(list(DISTRICTS))
    cycle = {"laws": LAWS, "guides": GUIDES, "agency": AGENCY}.get(cat)
    if cycle is not None:
        title = cycle[j % len(cycle)]
        return title if j < len(cycle) else f"{title}（{d.year}年{'修订' if cat == 'laws' else '更新'}）"
    choices = {
        "news": [f"全市{topic}安全生产工作会议召开", f"市安监局召开{topic}{activity}推进会",
                 f"市安监局督导检查{district}{topic}安全生产工作", "全市“安全生产月”活动启动",
                 f"市安监局组织开展{topic}事故应急演练", f"我市{d.month}月份安全生产形势总体平稳"],
        "notices": [f"关于开展{topic}{activity}的通知", f"关于做好{rng.choice(HOLIDAYS)}期间安全生产工作的通知",
                    f"关于印发《{d.year}年全市{topic}{activity}实施方案》的通知",
                    f"关于公布{d.year}年第{NUMERALS[rng.randrange(6)]}批安全生产标准化达标企业名单的公告",
                    f"关于举办{topic}企业安全管理人员培训班的通知"],
        "updates": ([f"{district}扎实开展{topic}{activity}", f"{district}召开{topic}安全生产工作会议",
                     f"{district}组织{topic}企业负责人安全培训"] if source else
                    [f"全市{topic}{activity}取得阶段性成效", f"市安监局开展{topic}领域{activity}"]),
        "committee": [f"市安委会办公室关于{d.month}月份全市安全生产情况的通报",
                      f"市安委会召开{d.year}年第{NUMERALS[rng.randrange(4)]}次全体成员会议",
                      f"市安委会办公室关于开展{topic}安全生产督查的通知",
                      f"市安委会办公室关于印发《{topic}安全专项整治方案》的通知"],
        "accidents": [f"{district}{rng.choice(COMPANIES)}“{d.month}·{d.day}”{rng.choice(ACCIDENT_KINDS)}事故调查报告",
                      f"关于{district}{rng.choice(COMPANIES)}“{d.month}·{d.day}”{rng.choice(ACCIDENT_KINDS)}事故的通报"],
    }
    return rng.choice(choices[cat])


def _sentence(rng: random.Random, d: date) -> str:
    return rng.choice(TRICKY if rng.random() < 0.08 else SENTENCES).format(
        topic=rng.choice(TOPICS), activity=rng.choice(ACTIVITIES), n=rng.randint(20, 400),
        m=rng.randint(30, 900), k=rng.randint(2, 12), p=rng.randint(3, 30), month=d.month,
        landline=rng.randint(2_000_000, 3_999_999))


def _body(rng: random.Random, cat: str, d: date, seq: int, source: str | None) -> str:
    paras: list[str] = []
    when = f"{d.year}年{d.month}月{d.day}日"
    if cat in ("notices", "committee"):
        if rng.random() < 0.6:
            paras.append(f"淄安{'监发' if cat == 'notices' else '委办'}〔{d.year}〕{seq % 150 + 1}号")
        paras.append(rng.choice(ADDRESSEES))
        paras.append(SENTENCES[0].format(topic=rng.choice(TOPICS)) + "现就有关事项通知如下：")
        for n, head in enumerate(rng.sample(ITEMS_CN, rng.randint(2, 4))):
            paras.append(f"{NUMERALS[n]}、{head}。" + "".join(_sentence(rng, d) for _ in range(rng.randint(1, 3))))
        paras.append(f"市安全生产监督管理局\n{when}")
    elif cat == "laws":
        paras.append(f"（{d.year - rng.randint(1, 12)}年公布，自公布之日起施行）")
        for n, text in enumerate(rng.sample(ARTICLES, rng.randint(3, 6))):
            paras.append(f"第{NUMERALS[n]}条　{text}")
    elif cat == "guides":
        for head, text in (("办理依据", f"《{rng.choice(LAWS)}》"), ("办理条件", _sentence(rng, d)),
                           ("办理时限", f"自受理之日起{rng.randint(5, 20)}个工作日内办结。"),
                           ("咨询方式", f"咨询电话：0533-{rng.randint(2_000_000, 3_999_999)}。")):
            paras.append(f"**{head}**：{text}")
    elif cat == "accidents":
        paras.append(f"{when}{rng.randint(0, 23)}时许，该企业在{rng.choice(OPERATIONS)}过程中发生事故，造成"
                     f"{rng.randint(1, 3)}人死亡、{rng.randint(0, 4)}人受伤，直接经济损失{rng.randint(80, 900)}万元。")
        paras.append("事故发生后，市政府依法成立了由市安监局牵头，市公安局、市监察局、市总工会等部门参加的事故调查组，"
                     "并邀请市人民检察院派员参加。经调查认定，这是一起生产安全责任事故。")
        paras.append("事故的间接原因是企业安全生产主体责任不落实，安全管理制度不健全，隐患排查治理不到位。"
                     + _sentence(rng, d))
        paras.append("各区县、各有关部门要深刻吸取事故教训，举一反三，切实防范同类事故再次发生。")
    elif cat == "agency":
        paras.append(f"机关内部设办公室、政策法规科、安全监督管理科等{rng.randint(6, 10)}个科室。")
        paras.extend(_sentence(rng, d) for _ in range(2))
    else:
        who = f"{source}安监局" if source else "市安监局"
        paras.append(f"{when}，{who}召开{rng.choice(TOPICS)}安全生产工作会议，部署{rng.choice(ACTIVITIES)}工作。"
                     + _sentence(rng, d))
        paras.extend("".join(_sentence(rng, d) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(2, 4)))
    return "\n\n".join(paras) + "\n"


def _resident_id(rng: random.Random) -> str:
    born = date(1960, 1, 1) + timedelta(days=rng.randrange(365 * 36))
    first17 = f"{rng.choice(list(DISTRICTS.values()))}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return first17 + id_check_char(first17)


def _mobile(rng: random.Random) -> str:
    digits = f"{rng.choice(['138', '139', '150', '158', '186', '177', '189', '199'])}{rng.randrange(10**8):08d}"
    form = rng.randrange(4)
    if form == 1:
        return f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}"
    if form == 2:
        return f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"
    return digits


def _plant(rng: random.Random, kind: str, body: str) -> tuple[str, str]:
    """Put one piece of sensitive content into `body`; return the new body and the exact text planted."""
    paras = body.split("\n\n")
    surname = rng.choice(SURNAMES)
    if kind == "classified_marking":
        text = rng.choice(["机密★10年", "机密★10年", "秘密★1年", "绝密★长期", "【机密】"])
        return f"{text}\n\n{body}", text
    if kind == "internal_marking":
        text = rng.choice(["内部资料 注意保存", "内部资料 注意保存", "内部资料，请勿外传", "【内部】"])
        return f"{text}\n\n{body}", text
    if kind == "resident_id":
        text = _resident_id(rng)
        line = f"联系人：{surname}某某，身份证号码{text}。"
    else:
        text = _mobile(rng)
        line = f"联系人：{surname}同志，手机{text}。"
    paras.insert(rng.randint(1, len(paras)), line)
    return "\n\n".join(paras), text


def _front_matter(fields: dict[str, Any]) -> str:
    lines = ["---"]
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, list):
            lines.append(f"{key}: [{', '.join(value)}]")
        elif isinstance(value, date):
            lines.append(f"{key}: {value.isoformat()}")
        else:  # a JSON string is a valid YAML double-quoted scalar
            lines.append(f"{key}: {json.dumps(value, ensure_ascii=False)}")
    return "\n".join(lines) + "\n---\n"


def _broken(out: Path) -> list[dict[str, Any]]:
    """Files intake must reject (one per reason), and two it must accept despite their encoding."""
    ok = {"category": "notices", "date": date(FIRST_YEAR, 6, 1)}
    body = "各区县安监局：\n\n请按要求做好相关工作。\n"
    # The two accepted files are dated the year before the corpus, so that the corpus years' statistics
    # (`publisher report annual`) hold exactly the bureau's reported items.
    earlier = {**ok, "date": date(FIRST_YEAR - 1, 12, 30)}
    rejects = [
        ("bad-yaml.md", "front matter is not valid YAML",
         '---\nid: broken-bad-yaml\ntitle: "关于做好汛期安全生产工作的通知\ncategory: [notices\n---\n' + body),
        ("no-title.md", "title is missing", _front_matter({"id": "broken-no-title", **ok}) + body),
        ("unknown-category.md", "category is not configured",
         _front_matter({"id": "broken-unknown-category", "title": "关于天气预报的说明", **ok, "category": "weather"})
         + body),
        ("no-front-matter.md", "no front matter", "# 关于做好汛期安全生产工作的通知\n\n" + body),
        ("empty.md", "empty file", ""),
        ("bad-date.md", "publish_at is not a date",
         _front_matter({"id": "broken-bad-date", "title": "关于做好汛期安全生产工作的通知", **ok,
                        "publish_at": "2015-13-45T25:00:00+08:00"}) + body),
        ("missing-attachment.md", "attachment not found",
         _front_matter({"id": "broken-missing-attachment", "title": "关于公布安全生产标准化达标企业名单的公告", **ok,
                        "attachments": ["qiye-mingdan.pdf"]}) + body),
        ("escape-attachment.md", "attachment path leaves the inbox",
         _front_matter({"id": "broken-escape-attachment", "title": "关于公布安全生产标准化达标企业名单的公告", **ok,
                        "attachments": ["../../etc/passwd"]}) + body),
    ]
    entries: list[dict[str, Any]] = []
    for name, reason, text in rejects:
        (out / name).write_text(text, encoding="utf-8")
        entries.append({"file": name, "reason": reason})
    for name, item_id, encoding, title in (
        ("gb18030-encoded.md", "gb18030-encoded-0001", "gb18030", "关于做好高温季节安全生产工作的通知"),
        ("utf8-bom.md", "utf8-bom-0001", "utf-8-sig", "关于开展“安全生产月”活动的通知"),
    ):
        text = _front_matter({"id": item_id, "title": title, **earlier}) + body
        (out / name).write_bytes(text.encode(encoding))
        entries.append({"file": name, "reason": None, "accept_as": item_id})
    return entries


def make_corpus(out: Path, *, scale: float = 1.0, seed: int = 2015, sensitive: int = 12,
                broken: bool = False) -> dict[str, Any]:
    """Write the item files and `manifest.json` into `out`; return the manifest."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    years = max(1, math.ceil(scale - 1e-9))
    counts = {cat: round(n * scale) for cat, n in COUNTS.items()}

    # (date, category, source) for every item; each category's items spread evenly over the years.
    drafts: list[tuple[date, str, str | None]] = []
    for cat, n in counts.items():
        districts = set(rng.sample(range(n), min(n, round(DISTRICT_UPDATES * scale)))) if cat == "updates" else set()
        for j in range(n):
            year = FIRST_YEAR + j * years // n
            when = date(year, 1, 1) + timedelta(days=rng.randrange(365))
            drafts.append((when, cat, rng.choice(list(DISTRICTS)) if j in districts else None))
    drafts.sort(key=lambda t: (t[0], t[1], t[2] or ""))

    by_cat: dict[str, list[int]] = {}
    for i, (_, cat, _) in enumerate(drafts):
        by_cat.setdefault(cat, []).append(i)
    microblog: set[int] = set()
    wanted = round(MICROBLOG * scale)
    for cat in MICROBLOG_PREFERENCE:
        pool = by_cat.get(cat, [])
        take = min(len(pool), wanted - len(microblog))
        microblog.update(pool if take == len(pool) else rng.sample(pool, take))
    planted = dict(zip(sorted(rng.sample(range(len(drafts)), min(sensitive, len(drafts)))),
                       (SENSITIVE_KINDS[k % len(SENSITIVE_KINDS)] for k in range(sensitive)), strict=False))

    manifest: dict[str, Any] = {"seed": seed, "scale": scale, "items": [], "sensitive": [], "broken": []}
    per_cat: dict[str, int] = {}
    for i, (when, cat, source) in enumerate(drafts):
        item_id = f"{when.year}-{cat}-{i + 1:05d}"
        j = per_cat[cat] = per_cat.get(cat, -1) + 1
        if i in microblog:
            channels: list[str] | None = ALL_CHANNELS
        else:
            channels = ALL_CHANNELS[:3] if cat in MICROBLOG_BY_DEFAULT else None
        if channels is not None and cat in WECHAT_BY_DEFAULT:  # a named routing keeps the category's WeChat article
            channels = [*channels, "wechat"]
        title = _title(rng, cat, when, source, j)
        body = _body(rng, cat, when, i, source)
        if i in planted:
            body, text = _plant(rng, planted[i], body)
            manifest["sensitive"].append({"id": item_id, "kind": planted[i], "text": text})
        fields = {"id": item_id, "title": title, "category": cat, "date": when, "source": source, "channels": channels}
        (out / f"{item_id}.md").write_text(_front_matter(fields) + body, encoding="utf-8")
        manifest["items"].append({"file": f"{item_id}.md", "id": item_id, "category": cat,
                                  "channels": channels, "source": source})
    if broken:
        manifest["broken"] = _broken(out)
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m publisher.sandbox.corpus", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory to write the item files and manifest.json into")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count (10 = ten years)")
    parser.add_argument("--seed", type=int, default=2015)
    parser.add_argument("--sensitive", type=int, default=12, help="items carrying content the screen must stop")
    parser.add_argument("--broken", action="store_true", help="also write files intake must reject")
    args = parser.parse_args(argv)
    manifest = make_corpus(args.out, scale=args.scale, seed=args.seed, sensitive=args.sensitive, broken=args.broken)
    print(f"{len(manifest['items'])} items, {len(manifest['sensitive'])} sensitive, "
          f"{len(manifest['broken'])} broken files written to {args.out}")


if __name__ == "__main__":
    main()
