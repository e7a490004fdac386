"""Plain article text from a MediaWiki XML dump (the evaluation text of quantcore.assets).

What is kept: the title and the prose of each main-namespace, non-redirect page, with link
labels, bold/italic text and headings as plain words. What is dropped: templates ({{...}}),
tables ({|...|}), references (<ref>...</ref>), comments, math/gallery blocks, file, image,
category and interlanguage links, list markers, and the trailing sections that are lists of
sources (References, External links, See also, ...).
"""

from __future__ import annotations

import bz2
import html
import io
import re
import xml.etree.ElementTree as ET

_COMMENT = re.compile(r"<!--.*?-->", re.S)
# Tags whose whole content is not prose.
_BLOCK_TAGS = re.compile(r"<(ref|math|gallery|timeline|score|syntaxhighlight|source|imagemap|chem)\b[^>]*?/>"
                         r"|<(ref|math|gallery|timeline|score|syntaxhighlight|source|imagemap|chem)\b[^>]*>.*?</\2\s*>",
                         re.S | re.I)
_INNER_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_INNER_TABLE = re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.S)
# a link whose text holds no other [[link]] (single brackets, as in "[above]", are allowed)
_INNER_LINK = re.compile(r"\[\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\]")
_EXTERNAL_LINK = re.compile(r"\[(?:https?|ftp)://[^\s\]]*(?:\s+([^\]]*))?\]")
_BOLD_ITALIC = re.compile(r"'{2,5}")
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$", re.M)
_LIST_MARKER = re.compile(r"^[*#:;]+\s*", re.M)
_TAG = re.compile(r"<[^<>]+>")
_MAGIC = re.compile(r"__[A-Z]+__")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")

# Links with these namespaces are not prose (File: captions, categories, ...).
_DROP_LINK_PREFIXES = {"file", "image", "category", "media", "wikipedia", "wp", "template", "help", "portal",
                       "special", "wikt", "wiktionary", "commons", "s", "q", "n", "b", "v"}
_DROP_SECTIONS = {"references", "external links", "see also", "further reading", "notes", "bibliography",
                  "sources", "footnotes", "citations", "notes and references", "references and notes"}


def _remove_nested(pattern: re.Pattern, text: str) -> str:
    """Remove innermost matches until none is left (templates and tables nest)."""
    while True:
        text, n = pattern.subn("", text)
        if n == 0:
            return text


def _link_text(match: re.Match) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    prefix, colon, _ = target.partition(":")
    if colon:
        p = prefix.strip().lower()
        # interlanguage links look like [[de:Titel]]: a 2-3 letter (or xx-yy) prefix
        if p in _DROP_LINK_PREFIXES or re.fullmatch(r"[a-z]{2,3}(-[a-z]+)?", p):
            return ""
    if label:
        return label.rpartition("|")[2] if target.lower().startswith(("file:", "image:")) else label
    return target.lstrip(":")


def strip_markup(wikitext: str) -> str:
    """Plain text of one article's wikitext (already XML-unescaped).

    Args:
        wikitext: the <text> of one page.

    Returns:
        The prose, paragraphs separated by one blank line.

    Example:
        >>> strip_markup("'''Albedo''' is a [[diffuse reflection|reflectivity]].{{cn}}")
        'Albedo is a reflectivity.'
    """
    text = _COMMENT.sub("", wikitext)
    text = _BLOCK_TAGS.sub("", text)
    text = _remove_nested(_INNER_TEMPLATE, text)
    text = _remove_nested(_INNER_TABLE, text)
    while True:  # innermost links first, so a file link's caption links are resolved before it is dropped
        text, n = _INNER_LINK.subn(_link_text, text)
        if n == 0:
            break
    text = _EXTERNAL_LINK.sub(lambda m: m.group(1) or "", text)
    text = _BOLD_ITALIC.sub("", text)
    text = _MAGIC.sub("", text)

    kept: list[str] = []
    dropping = False
    for line in text.split("\n"):
        heading = _HEADING.match(line)
        if heading:
            title = heading.group(2).strip()
            dropping = title.lower() in _DROP_SECTIONS
            if not dropping:
                kept.extend(["", title, ""])
            continue
        if not dropping:
            kept.append(line)
    text = "\n".join(kept)

    text = _LIST_MARKER.sub("", text)
    text = _TAG.sub("", text)
    text = html.unescape(text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    # Leftover table/template debris lines (a lone "|", "}}") carry no prose.
    text = "\n".join(line for line in text.split("\n") if not re.fullmatch(r"[|{}!\-\[\]]+", line))
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


def dump_articles(data: bytes) -> list[tuple[str, str]]:
    """(title, plain text) of each article of a MediaWiki XML dump, in file order.

    Args:
        data: the dump, bz2-compressed or plain XML bytes.

    Returns:
        Pages in namespace 0 that are not redirects and keep some text after stripping.
    """
    if data[:3] == b"BZh":
        data = bz2.decompress(data)
    articles = []
    for _, elem in ET.iterparse(io.BytesIO(data), events=("end",)):
        if not elem.tag.endswith("}page") and elem.tag != "page":
            continue
        fields = {child.tag.rpartition("}")[2]: child for child in elem}
        title = (fields["title"].text or "") if "title" in fields else ""
        ns = (fields["ns"].text or "0") if "ns" in fields else "0"
        text_node = None
        revision = fields.get("revision")
        if revision is not None:
            for child in revision:
                if child.tag.rpartition("}")[2] == "text":
                    text_node = child
        body = (text_node.text or "") if text_node is not None else ""
        elem.clear()
        if ns.strip() != "0" or "redirect" in fields or body.lstrip()[:9].upper() == "#REDIRECT":
            continue
        plain = strip_markup(body)
        if plain:
            articles.append((title, plain))
    return articles


def dump_text(data: bytes) -> str:
    """All articles of a dump as one text: "title\\n\\nbody", articles separated by a blank line."""
    return "\n\n".join(f"{title}\n\n{body}" for title, body in dump_articles(data))
