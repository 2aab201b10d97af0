"""The screen's shortcuts read a field exactly as the long way does: a body of plain paragraphs without the
Markdown renderer, and the characters that normalisation changes found without looking each one up."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.review import seen
from publisher.review.screen import screen
from publisher.review.seen import MARKDOWN, Seen, _markdown_shown, _normal, _visible

# Pieces a body is made of: CJK text and punctuation (full-width forms that NFKC changes among them), digits,
# white space of every kind, traditional characters, invisible ones, and every character or line start that
# makes Markdown more than paragraphs.
PIECES = st.sampled_from([
    "机密", "内部资料", "秘密★1年", "各区县安监局", "，", "。", "：", "（", "）", "“", "”", "《", "》", "、", "機密", "內部",
    "0533-3184163", "138 1234 5678", "1", "2015年", "5.", "3)", "a", "Z", "'", '"', "%", "$", "@", "^", "{", "}", ":",
    ";", "/", "?", ",", ".", "(", ")", " ", "  ", "    ", "\t", "\u3000", "\u00a0", "\u200b", "\ufeff", "\u2028",
    "\x85", "\r", "\x0c", "\n", "\n\n", "\n\n\n", "\n-", "\n- ", "\n+ ", "\n= ", "\n===", "\n---", "\n#", "\n# ",
    "\n> ", "\n1. ", "\n1) ", "\n2.", "&", "&amp;", "&#26426;", "<b>", "<!-- x -->", "*", "**", "_", "`", "[", "]",
    "!", "|", "~~", "\\", "#", "-", "+", "=", ">", "０", "１", "ｱ", "ﬁ", "e\u0301",
])
BODIES = st.lists(PIECES, max_size=40).map("".join)


def rendered(source: str) -> tuple[str, list[tuple[int, str]]]:
    shown, lines = _visible(MARKDOWN.render(source))
    return shown, list(lines)


@given(BODIES)
@settings(max_examples=3000, deadline=None)
def test_plain_paragraphs_read_as_the_renderer_shows_them(body: str) -> None:
    """Whatever the body, its visible text and lines are those of the rendered Markdown."""
    shown, lines = _markdown_shown(body)
    assert (shown, list(lines)) == rendered(body)


def test_the_shortcut_takes_plain_bodies_and_leaves_markup_to_the_renderer() -> None:
    """Paragraphs of prose (a phone number's dashes and a # inside a line included) go without the renderer;
    a line that Markdown would read as a list, heading, rule or code does not, and reads as rendered."""
    plain = "各有关企业：\n\n为深入贯彻落实全市安全生产工作部署。\n咨询电话：0533-3184163。第#3号\n\n\n市安全生产监督管理局\n"
    assert not seen._MARKUP.search(plain)
    assert _markdown_shown(plain) == ("各有关企业：\n为深入贯彻落实全市安全生产工作部署。\n咨询电话：0533-3184163。第#3号\n"
                                      "市安全生产监督管理局\n", [(0, "text"), (0, "text"), (7, "text"), (49, "text")])
    assert rendered(plain) == (_markdown_shown(plain)[0], list(_markdown_shown(plain)[1]))
    for body in ("- 秘密\n", "## 秘密\n", "1. 秘密\n", "秘密\n---\n", "    秘密\n", "\u3000\u3000秘密\n", "秘密  \n正文",
                 "**机密**", "&#26426;&#23494;★", "| a |\n|---|\n| 秘密 |", "~~内部~~"):
        assert seen._MARKUP.search(body), body
        assert (_markdown_shown(body)[0], list(_markdown_shown(body)[1])) == rendered(body)


def test_a_list_or_heading_of_the_bare_word_is_still_an_ordinary_word_and_prose_still_a_marking() -> None:
    """The line kinds the screen's standalone-word rule reads come through: prose flagged, a list item not."""
    assert [f.kind for f in screen("", "各单位：\n\n秘密\n\n请遵照执行。")] == ["classified_marking"]
    assert screen("", "密级分为三级：\n\n- 绝密\n- 机密\n- 秘密\n") == []
    assert [(f.kind, f.text, f.start) for f in screen("", "通知如下。\n\n联系人手机13812345678，请转告。")] == [
        ("mobile_number", "13812345678", 12)]


def test_normalisation_changes_each_character_as_its_own_normal_form_says() -> None:
    """Full-width forms, traditional characters and invisible ones read as before, whatever was read earlier:
    the set of characters known to stay as they are never hides one that changes."""
    for _ in range(2):  # the second time with every character known
        s = Seen.of("機密★１０年，联系\u200b电话：１３８１２３４５６７８ ﬁle", mode="plain")
        assert s.text == "机密★10年,联系电话:13812345678 file"
        at = s.text.index("13812345678")
        span = s.source_span(at, at + 11)
        assert span is not None and s.source[span[0]:span[1]] == "１３８１２３４５６７８"  # the number as written
    assert "，" not in seen._UNCHANGED and "★" in seen._UNCHANGED
    assert all(_normal(c) == c for c in seen._UNCHANGED)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
@settings(max_examples=1000, deadline=None)
def test_normalised_text_is_each_character_normalised(text: str) -> None:
    """Any text normalises to the concatenation of its characters' normal forms, then folded to simplified."""
    expected = seen.t2s().convert("".join(_normal(c) for c in text))
    got = Seen.of(text, mode="plain")
    if len(expected) == len("".join(_normal(c) for c in text)):
        assert got.text == expected
    assert len(got.to_shown) == len(got.text)


def test_every_cjk_unified_ideograph_is_its_own_normal_form() -> None:
    """The ideographs `_changed` leaves out unread are exactly those normalisation keeps as they are."""
    block = [chr(c) for c in range(0x4E00, 0xA000)]
    assert seen._IDEOGRAPHS.fullmatch("".join(block))
    assert [c for c in block if _normal(c) != c] == []
    assert not seen._IDEOGRAPHS.search("\u3400\uf900\u2f00\u3007〇々\uff0c")  # extension A, compatibility, radicals
