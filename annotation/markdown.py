"""Markdown for untrusted text (model output, prompts) and for project guidelines.

Model output and imported text are untrusted, and a renderer that is slow on crafted text is a
denial of service (Python-Markdown took 45 s on 11 KB of nested brackets and over 10 minutes on
70 KB). So, three layers:

1. cmark-gfm (GitHub's C CommonMark parser, through `cmarkgfm`), whose parser is built to run in
   linear time on any input (its pathological-input suite). Raw HTML is never recognised: every
   `<` in the source but an autolink's is swapped for a private sentinel before parsing and
   written back as `&lt;` afterwards, so `<script>` or `<img onerror=...>` written by a model is shown as the
   characters, in text and in code alike. Images become links (a remote image would tell a
   third party who is rating, and when).
2. A size budget: text longer than `MAX_CHARS` is not parsed at all but shown as escaped plain
   text (`plain_html`), as is any text the parser fails on; rendering is thus bounded in time.
3. nh3 (ammonia) cleans the result against a small allowlist of tags and attributes, with only
   http, https and mailto links, all marked rel="noopener noreferrer nofollow".

Every block (paragraph, list item, heading, quote, cell) is marked `dir="auto"`: the browser
lays out each one by its own first strong character, so a Hebrew or Arabic paragraph reads right
to left beside English ones.

A response's HTML is rendered once and kept with it (`Response.text_html`, see
annotation.services.responses), under `markdown_key(text)`: the text's hash and this renderer's
version. Bump RENDER_VERSION when the output changes; stored HTML of another version or text is
rendered again on first view (that is the backfill: lazily, one pair at a time).
"""

import hashlib
import html
import logging
import re

import cmarkgfm
import nh3
from cmarkgfm.cmark import Options

logger = logging.getLogger(__name__)

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td", "del", "sup", "sub",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = {"http", "https", "mailto"}
DIR_AUTO_TAGS = ("p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "th", "td")
RENDER_VERSION = "3"
# Longer text is shown as plain text: cmark is linear, so this bounds a render's time.
MAX_CHARS = 100_000
# Stands in for "<" while cmark parses: a Unicode noncharacter, never meant for interchange.
_LT = "\ufdd0"
# Every "<" but the one opening a CommonMark autolink (<https://...>, never raw HTML).
_RAW_LT = re.compile(r"<(?![A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>]*>)")
# cmark's own serialisation of an image (attribute values already escaped by cmark).
_IMG = re.compile(r'<img src="([^"]*)" alt="([^"]*)"(?: title="[^"]*")? />')
_OPTIONS = Options.CMARK_OPT_HARDBREAKS | Options.CMARK_OPT_VALIDATE_UTF8
_EXTENSIONS = ["table", "autolink", "strikethrough"]


class RenderFailed(Exception):
    """The parser refused the text (it is then shown as plain text)."""


def _cmark(text: str) -> str:
    source = _RAW_LT.sub(_LT, text.replace(_LT, "\ufffd"))
    try:
        out = cmarkgfm.markdown_to_html_with_extensions(source, options=_OPTIONS, extensions=_EXTENSIONS)
    except (UnicodeError, ValueError) as exc:  # lone surrogates, ...
        raise RenderFailed(str(exc)) from None
    out = _IMG.sub(r'<a href="\1">\2</a>', out)
    return out.replace(_LT, "&lt;")


def _clean(html_text: str) -> str:
    return nh3.clean(
        html_text,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
        set_tag_attribute_values={tag: {"dir": "auto"} for tag in DIR_AUTO_TAGS},
    )


def plain_html(text: str) -> str:
    """`text` as escaped plain text, its line breaks kept (what a text too long to parse shows)."""
    escaped = html.escape(text.encode("utf-8", "replace").decode("utf-8"), quote=False)
    return '<p dir="auto" class="plain">' + escaped.replace("\n", "<br>") + "</p>"


def render_markdown(text: str) -> str:
    """Safe HTML for `text`; the caller may mark it safe. Never slower than linear in `text`."""
    if not text:
        return ""
    if len(text) > MAX_CHARS:
        return plain_html(text)
    try:
        return _clean(_cmark(text))
    except RenderFailed as exc:
        logger.warning("markdown shown as plain text: %s", exc)
        return plain_html(text)


def markdown_key(text: str) -> str:
    """What stored HTML was rendered from: the renderer's version and the text's hash."""
    data = text.encode("utf-8", "surrogatepass")
    return f"{RENDER_VERSION}:{hashlib.blake2b(data, digest_size=16).hexdigest()}"
