"""Text from files that other people may write (run names, statuses, errors, labels), shown through
Streamlit's markdown as the characters it is."""

from __future__ import annotations

import re

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$<>&])")  # CommonMark escapes any of these with a backslash
_AFTER_COLON = "\u200b"  # a zero-width space: Streamlit reads :icon: and :material/x: codes, and bare URLs, past escapes


def literal(text) -> str:
    """`text` with every markdown character escaped: a name or error written into a shared runs folder
    never becomes formatting, a link, an icon, or an image the browser would fetch from another host."""
    return _MARKDOWN.sub(r"\\\1", str(text)).replace(":", ":" + _AFTER_COLON)
