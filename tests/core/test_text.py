from core.text import without_remote_images


def test_inline_image_becomes_a_link():
    assert without_remote_images("see ![pixel](https://t.example/p.gif) here") == (
        "see [image: pixel](https://t.example/p.gif) here"
    )


def test_reference_image_becomes_a_link():
    text = "![logo][1]\n\n[1]: https://t.example/logo.png"
    assert without_remote_images(text).startswith("[image: logo][1]")


def test_plain_links_and_exclamations_are_untouched():
    text = "Wow! [docs](https://burr.apache.org) and !important, ![not closed"
    assert without_remote_images(text) == text


# ---- cleaning and titles ------------------------------------------------------------------------
from core.text import TITLE_CHARS, is_valid_conversation_id, plain_text, title_text  # noqa: E402


def test_bidi_overrides_and_isolates_are_removed_so_a_name_shows_as_it_is_spelled():
    spoof = "invoice_\u202egnp.exe"
    assert plain_text(spoof) == "invoice_gnp.exe"
    assert title_text("a\u2066b\u2069c\u202ad\u202c") == "abcd"


def test_control_characters_go_but_line_breaks_and_tabs_stay_in_messages():
    assert plain_text("a\x00b\x07c\x7f\nd\te\r\n") == "abc\nd\te\r\n"
    assert plain_text("broken \ud800 surrogate") == "broken ? surrogate"


def test_titles_drop_zero_width_characters_but_keep_emoji_joiners():
    family = "👨\u200d👩\u200d👧"
    assert title_text("pay\u200bpal\ufeff\u2060 " + family) == "paypal " + family


def test_titles_are_one_line_of_plain_text_without_markdown_marks():
    assert title_text("# Heading\n\n**bold** and *it* and `code`\n- item") == "Heading bold and it and code item"
    assert title_text("```python\nprint('x')\n```") == "print('x')"
    assert title_text("see [the docs](https://x.example) ![img](http://t/p.gif)") == "see the docs img"
    assert title_text("snake_case_name stays") == "snake_case_name stays"


def test_one_title_limit_for_default_and_typed_titles():
    assert len(title_text("word " * 100)) <= TITLE_CHARS
    assert title_text("x" * 500) == "x" * TITLE_CHARS


def test_conversation_ids_in_links():
    assert is_valid_conversation_id("a1b2-c3_d.e:f")
    assert not any(map(is_valid_conversation_id, ["", None, "-x", "a b", "a" * 129, "é", "a\x00"]))
