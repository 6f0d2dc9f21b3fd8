from core.rendering import without_remote_images


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
