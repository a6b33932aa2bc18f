from django import template

from annotation.exporters.filters import describe_filters

register = template.Library()


@register.filter(name="export_filters")
def export_filters(filters: dict, every: bool = False) -> list[str]:
    """An export's stored filter spec as `name: value` lines (only what differs from the
    defaults; with `every`, all of them)."""
    return describe_filters(filters or {}, every=bool(every))
