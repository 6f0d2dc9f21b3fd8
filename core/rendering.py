"""Text policies for showing messages: model output is untrusted, so nothing in it may load by itself.

Streamlit's Markdown never executes raw HTML (Burrow never passes unsafe_allow_html), but a
Markdown image would make every viewer's browser fetch a URL chosen by whoever wrote the message
(a tracking pixel). Images are therefore shown as plain links the reader can choose to open.
"""
from __future__ import annotations

import re

# "![alt](url)" and "![alt][ref]": the "!" turns a link into an auto-loading image.
_IMAGE = re.compile(r"!\[(?=[^\]\n]*\]\s*[(\[])")


def without_remote_images(text: str) -> str:
    """Turns Markdown images into links labelled as images; everything else is left alone."""
    return _IMAGE.sub("[image: ", text)
