"""Text for the pages: what other people may write in files (run names, statuses, errors, labels), shown
through Streamlit's markdown as the characters it is, and counts with their nouns in agreement."""

from __future__ import annotations

import re

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$<>&])")  # CommonMark escapes any of these with a backslash
_AFTER_COLON = "\u200b"  # a zero-width space: Streamlit reads :icon: codes and bare URLs past escapes


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """"1 epoch", "3 epochs", "1,000 images": a count and its noun, in the number that agrees."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def literal(text) -> str:
    """`text` with every markdown character escaped: a name or error written into a shared runs folder
    never becomes formatting, a link, an icon, or an image the browser would fetch from another host."""
    return _MARKDOWN.sub(r"\\\1", str(text)).replace(":", ":" + _AFTER_COLON)
