"""Markdown for untrusted text (model output, prompts) and for project guidelines.

Two layers, so one mistake does not open a hole:

1. Python-Markdown with its raw-HTML handling switched off: `<script>` or `<img onerror=...>`
   written by a model is not passed through as HTML but serialised as text, so the rater sees
   the characters. Images are not rendered either (a remote image would tell a third party
   who is rating, and when).
2. nh3 (ammonia) cleans the result against a small allowlist of tags and attributes, with
   only http, https and mailto links, all marked rel="noopener noreferrer nofollow".

Every block (paragraph, list item, heading, quote, cell) is marked `dir="auto"`: the browser
lays out each one by its own first strong character, so a Hebrew or Arabic paragraph reads right
to left beside English ones.

A long response takes hundreds of milliseconds to render, so a response's HTML is rendered once
and kept with it (`Response.text_html`, see annotation.services.responses), under
`markdown_key(text)`: the text's hash and this renderer's version. Bump RENDER_VERSION when the
output changes; stored HTML of another version or text is rendered again on first view.
"""

import hashlib

import markdown as _markdown
import nh3
from markdown.extensions import Extension

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td", "del", "sup", "sub",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = {"http", "https", "mailto"}
EXTENSIONS = ["fenced_code", "tables", "sane_lists", "nl2br"]
DIR_AUTO_TAGS = ("p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "th", "td")
RENDER_VERSION = "2"


class _NoRawHtml(Extension):
    """Treat raw HTML in the source as text, and render no images."""

    def extendMarkdown(self, md):  # noqa: N802 - Python-Markdown's API
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")
        for name in ("image_link", "image_reference", "short_image_ref"):
            if name in md.inlinePatterns:
                md.inlinePatterns.deregister(name)


def render_markdown(text: str) -> str:
    """Safe HTML for `text`; the caller may mark it safe."""
    if not text:
        return ""
    # A Markdown instance keeps state between calls and is not thread-safe: one per call.
    md = _markdown.Markdown(extensions=[*EXTENSIONS, _NoRawHtml()], output_format="html")
    html = md.convert(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
        set_tag_attribute_values={tag: {"dir": "auto"} for tag in DIR_AUTO_TAGS},
    )


def markdown_key(text: str) -> str:
    """What stored HTML was rendered from: the renderer's version and the text's hash."""
    return f"{RENDER_VERSION}:{hashlib.blake2b(text.encode(), digest_size=16).hexdigest()}"
