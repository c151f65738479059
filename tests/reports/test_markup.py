"""The reports' HTML pieces: escaping, text charts, splitting on sections — and the strict Telegram
HTML check the report tests rely on, shown to refuse what Telegram would."""

from __future__ import annotations

from decimal import Decimal

import pytest

from actors.reports.markup import change, esc, money, size, sparkline, split, visible_length
from tests.reports.telegram_html import InvalidHtml, check


def test_escaping_makes_any_stored_string_plain_text() -> None:
    assert esc("<script>&</script>") == "&lt;script&gt;&amp;&lt;/script&gt;"
    assert esc("line\nbreak\x00") == "line break "
    assert esc("\ud800bad") == "?bad"  # an unpaired surrogate could not even be stored or sent
    long = esc("&" * 100, limit=10)
    assert long == "&amp;" * 9 + "…"  # shortened before escaping: no entity is ever cut
    assert check(f"<b>{esc('<i>not italic</i>')}</b>").text == "<i>not italic</i>"


def test_sparklines_scale_from_zero_and_mark_missing_values() -> None:
    assert sparkline([0, 1, 2, 4, 8, None, 8]) == "▁▂▃▅█·█"
    assert sparkline([0, 0, None]) == "▁▁·"
    assert sparkline([None, None]) == "··"
    assert sparkline([]) == ""


def test_numbers_read_as_an_admin_expects() -> None:
    assert size(512) == "512 B" and size(1536) == "1.5 KiB" and size(5 * 1024**4) == "5.0 TiB"
    assert money({"USDT": Decimal("15.50000000"), "TON": Decimal("1E+1")}) == "10 TON, 15.5 USDT"
    assert change(110, 100) == "▲ +10.0 %" and change(80, 100) == "▼ -20.0 %" and change(5, 5) == "±0 %"
    assert change(3, 0) == "new" and change(None, 5) == "no data to compare"


def test_sections_are_packed_whole_and_only_an_oversized_one_is_cut_between_lines() -> None:
    small = ("<b>A</b>", "x" * 30)
    other = ("<b>B</b>", "y" * 30)
    assert split([small, other], limit=200) == ["<b>A</b>\n" + "x" * 30 + "\n\n<b>B</b>\n" + "y" * 30]
    parts = split([small, other], limit=70)
    assert parts == [f"<b>A</b>\n{'x' * 30}\n\n<i>part 1/2</i>", f"<b>B</b>\n{'y' * 30}\n\n<i>part 2/2</i>"]
    big = ("<b>Big</b>", *(f"<code>{n:02d}</code> {'z' * 20}" for n in range(10)))
    cut = split([small, big], limit=120)
    assert all(visible_length(p) <= 120 for p in cut)
    assert cut[0].startswith("<b>A</b>") and "<b>Big</b> <i>(continued)</i>" in cut[2]
    assert sum(p.count("<code>") for p in cut) == 10
    for part in cut:
        check(part)
    with pytest.raises(ValueError, match="longer than a message"):
        split([("<b>T</b>", "w" * 200)], limit=100)


def test_the_length_is_counted_as_telegram_counts_it() -> None:
    # markup and entities do not count; an emoji counts as two UTF-16 units
    assert visible_length("<b>a&amp;b</b>") == 3
    assert visible_length("📊 x") == 4
    assert check("📊 <b>x</b>").length == 4


@pytest.mark.parametrize(
    ("markup", "why"),
    [
        ("a < b", "unescaped"),
        ("a > b", "unescaped"),
        ("fish & chips", "bare &"),
        ("&nbsp;", "bare &"),
        ("<script>x</script>", "Unsupported start tag"),
        ("<b>x", "end tag"),
        ("<b><i>x</b></i>", "Unmatched end tag"),
        ('<b class="x">x</b>', "attributes"),
        ("<code><b>x</b></code>", "inside <code>"),
        ("<b></b> ", "empty"),
        ("x" * 4097, "too long"),
    ],
)
def test_the_check_refuses_what_telegram_would(markup: str, why: str) -> None:
    with pytest.raises(InvalidHtml, match=why):
        check(markup)


def test_the_check_gives_telegrams_text_and_entities() -> None:
    parsed = check('📊 <b>A &amp; <i>b</i></b> <a href="https://x.y/?a=1&amp;b=2">l</a> &#8364;')
    assert parsed.text == "📊 A & b l €"
    assert parsed.entities == (
        ("bold", 3, 5, None),
        ("italic", 7, 1, None),
        ("text_link", 9, 1, "https://x.y/?a=1&b=2"),
    )
    assert check("x" * 4096).length == 4096
