from django import template
from django.utils.safestring import mark_safe

from annotation.markdown import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str) -> str:
    """Sanitised HTML for untrusted markdown (see annotation.markdown)."""
    return mark_safe(render_markdown(text or ""))  # noqa: S308 - cleaned by nh3 above
