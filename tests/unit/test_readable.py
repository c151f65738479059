"""What the dashboard shows of dead letters and jobs (issue 24): pretty JSON with folded long values,
the failing line of a traceback marked, empty fields left out, and the page cursors."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pytest

from worker_app.web.paging import Cursor, bigint_key, parse_cursor, text_key
from worker_app.web.readable import (
    FOLD_CHARS,
    fields,
    folded_text,
    highlight_traceback,
    is_empty,
    pretty_json,
    preview,
    short,
)

TRACEBACK = """Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/dramatiq/worker.py", line 519, in process_message
    res = actor(*message.args, **message.kwargs)
          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/opt/venv/lib/python3.11/site-packages/actors/payments/verify.py", line 42, in verify_pending
    invoice = parse(body)
              ^^^^^^^^^^^
  File "/usr/lib/python3.11/json/decoder.py", line 355, in raw_decode
    raise JSONDecodeError("Expecting value", s, err.value) from None
json.decoder.JSONDecodeError: Expecting value: <line 1> column 1 (char 0)
"""


def text_of(markup: str) -> str:
    """What a person reads: the tags dropped, the entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def marked(markup: str, kind: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(rf'<mark class="{kind}">(.*?)</mark>', markup, re.S)]


def test_json_is_indented_by_two_and_escaped() -> None:
    shown = str(pretty_json({"user": {"id": 7, "tags": ["a"]}, "on": True, "none": None, "x": "<b>"}))
    assert shown.startswith('<div class="json">') and "<b>" not in shown
    assert text_of(shown) == (
        '{\n  "user": {\n    "id": 7,\n    "tags": [\n      "a"\n    ]\n  },\n  "on": true,\n'
        '  "none": null,\n  "x": "<b>"\n}'
    )
    assert text_of(str(pretty_json([]))) == "[]" and text_of(str(pretty_json({}))) == "{}"


def test_a_long_string_shows_its_start_and_folds_the_whole_value() -> None:
    value = "x" * FOLD_CHARS + "y" * 80
    shown = str(pretty_json({"text": value}))
    start, folded = shown.split('<details class="fold">')
    assert start.endswith("&#34;" + "x" * FOLD_CHARS) and "y" not in start
    assert folded.startswith("<summary>… 80 more chars</summary>")
    assert html.unescape(folded).removeprefix("<summary>… 80 more chars</summary>").startswith(f'"{value}"')
    assert "<details" not in str(pretty_json("x" * FOLD_CHARS)), "a value of exactly the limit is whole"


def test_a_long_list_shows_its_first_items_and_folds_the_others() -> None:
    shown = str(pretty_json({"ids": list(range(25))}))
    assert "<summary>… 15 more items</summary>" in shown
    assert text_of(shown.split("<details", maxsplit=1)[0]).endswith("8,\n    9")
    assert text_of(shown).replace("… 15 more items", "").count(",") == 24, "every item is there"
    assert "<details" not in str(pretty_json(list(range(20))))


def test_nesting_too_deep_for_indenting_is_shown_compact_instead_of_failing() -> None:
    value: list[object] = []
    for depth in range(1, 5001):
        value = [value]
        if depth == 60:
            assert "[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]" in text_of(str(pretty_json(value)))
    assert "(nested too deeply to show)" in text_of(str(pretty_json(value)))


def test_folded_text_escapes_and_folds_beyond_the_limit() -> None:
    assert str(folded_text("<a>")) == "&lt;a&gt;"
    long = folded_text("é" * 130)
    assert "<summary>… 10 more chars</summary>" in long and str(long).count("é") == 120 + 130


def test_the_innermost_frame_of_the_projects_own_code_and_the_exception_are_marked() -> None:
    shown = str(highlight_traceback(TRACEBACK))
    assert marked(shown, "frame") == [
        '  File "/opt/venv/lib/python3.11/site-packages/actors/payments/verify.py", line 42, in '
        "verify_pending\n    invoice = parse(body)\n              ^^^^^^^^^^^"
    ]
    assert marked(shown, "exception") == [
        "json.decoder.JSONDecodeError: Expecting value: <line 1> column 1 (char 0)"
    ]
    assert text_of(shown) == TRACEBACK.rstrip("\n"), "nothing is lost, and the text is escaped"


def test_without_a_frame_of_its_own_the_last_frame_is_marked() -> None:
    library_only = TRACEBACK.replace("site-packages/actors/payments", "site-packages/requests")
    assert marked(str(highlight_traceback(library_only)), "frame")[0].startswith(
        '  File "/usr/lib/python3.11/json/decoder.py", line 355'
    )
    dev_tree = TRACEBACK.replace("/opt/venv/lib/python3.11/site-packages/actors", "/work/main/actors")
    assert "/work/main/actors/payments/verify.py" in marked(str(highlight_traceback(dev_tree)), "frame")[0]


def test_in_a_chain_the_last_traceback_is_the_one_marked() -> None:
    chained = (
        'Traceback (most recent call last):\n  File "/src/actors/a.py", line 1, in first\n    boom()\n'
        "KeyError: 'k'\n\nThe above exception was the direct cause of the following exception:\n\n"
        'Traceback (most recent call last):\n  File "/src/actors/a.py", line 9, in outer\n'
        "    raise PermanentError('no key') from e\nworker_app.errors.PermanentError: no key\nsecond line"
    )
    shown = str(highlight_traceback(chained))
    assert marked(shown, "frame") == [
        "  File \"/src/actors/a.py\", line 9, in outer\n    raise PermanentError('no key') from e"
    ]
    assert marked(shown, "exception") == ["worker_app.errors.PermanentError: no key\nsecond line"]


def test_text_that_is_no_traceback_is_only_escaped() -> None:
    assert str(highlight_traceback("adopted <note>")) == "adopted &lt;note&gt;"


def test_detail_fields_leave_out_empty_values_and_show_no_python_reprs() -> None:
    at = datetime(2026, 12, 7, 22, 53, 15, tzinfo=UTC)
    rows = fields(
        {"id": 3, "args": [1], "kwargs": {}, "options": None, "error": "", "raw_body": b"\xffraw",
         "dead_at": at, "flag": False, "traceback": "T", "attempts": 0},
        first=("dead_at",), skip=("traceback",),
    )  # fmt: skip
    assert [f.name for f in rows] == ["dead_at", "id", "args", "raw_body", "flag", "attempts"]
    shown = {f.name: str(f.html) for f in rows}
    assert '<time datetime="2026-12-07T22:53:15Z"' in shown["dead_at"] and "UTC" in shown["dead_at"]
    assert shown["flag"] == "no" and shown["attempts"] == "0" and shown["raw_body"] == "\ufffdraw"
    assert rows[0].label == "Dead at"
    assert all("None" not in s and "datetime." not in s for s in shown.values())
    assert [is_empty(v) for v in (None, "", b"", {}, [], 0, False)] == [True] * 5 + [False] * 2


def test_list_cells_are_one_short_line() -> None:
    assert preview({"b": [1, 2]}) == '{"b": [1, 2]}' and preview({}) == "" and preview(None) == ""
    assert preview(list(range(100)), limit=20) == "[0, 1, 2, 3, 4, 5, …"
    assert short("a\n  b\tc") == "a b c" and short(None) == "" and short("x" * 200, 10) == "x" * 9 + "…"


def test_a_page_cursor_reads_back_what_it_wrote() -> None:
    at = datetime(2026, 12, 7, 22, 53, 15, 123456, tzinfo=UTC)
    written = str(Cursor(at, "9f1c-2"))
    assert written == f"{int(at.timestamp())}123456_9f1c-2"
    assert parse_cursor(written, str) == Cursor(at, "9f1c-2")
    assert parse_cursor(str(Cursor(at, 42)), bigint_key) == Cursor(at, 42)
    for bad_id in ("0", str(2**63), "4x", "٣"):
        with pytest.raises(ValueError):
            parse_cursor(f"1_{bad_id}", bigint_key)
    with pytest.raises(ValueError):
        parse_cursor("1_" + "j" * 65, text_key)
    for bad in ("", "abc_1", "12", "-5_1", "1" * 18 + "_1", "12_"):
        with pytest.raises(ValueError, match="not a page position"):
            parse_cursor(bad, str)


def test_an_epoch_millisecond_stamp_named_at_shows_the_moment_it_names() -> None:
    shown = html.unescape(
        str(pretty_json({"enqueued_at": 1796687024767, "retries": 1796687024767, "dead_at": 12}))
    )
    # the …_at number in milliseconds gets its moment beside it (in UTC until the script localises it)
    assert '"enqueued_at": 1796687024767 <small class="stamp">(<time datetime="2026-12-07T23:43:44Z"' in shown
    # a number not named …_at, or too small to be a millisecond time, is left alone
    assert '"retries": 1796687024767,' in shown and '"dead_at": 12\n' in shown
