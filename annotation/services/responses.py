"""Responses as shown: their markdown rendered once and kept with them."""

from collections.abc import Iterable

from annotation import markdown
from annotation.models import Response


def responses_render(*, responses: Iterable[Response]) -> None:
    """Make sure each response's `text_html` is its text rendered by the current renderer.

    A response shown for the first time (or whose text or the renderer changed since) is rendered
    here and stored, in one UPDATE for all of them; the others cost nothing. Two processes that
    render the same response at once store the same HTML.
    """
    stale = []
    for response in responses:
        key = markdown.markdown_key(response.text)
        if response.text_html_key != key:
            response.text_html = markdown.render_markdown(response.text)
            response.text_html_key = key
            stale.append(response)
    if stale:
        Response.objects.bulk_update(stale, ["text_html", "text_html_key"])
