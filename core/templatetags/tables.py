"""The one table of the list pages, so that each page writes only its header and its row:

    {% load tables %}
    {% table runs as run class="runs" %}
      <tr><th>Version</th>…</tr>
    {% row %}
      <tr id="run-{{ run.pk }}">…</tr>
    {% empty %}
      <p class="muted">No reward-model runs yet.</p>
    {% endtable %}

renders `<table class="runs"><thead>header</thead><tbody>one row per item</tbody></table>`
when there are rows, and what stands after `{% empty %}` (or nothing) when there are none.
Attributes given as `name="value"` land on the `<table>` tag, escaped.
"""

from django import template
from django.template.base import token_kwargs
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()


class TableNode(template.Node):
    def __init__(self, rows, name, attrs, head, row, empty):
        self.rows, self.name, self.attrs = rows, name, attrs
        self.head, self.row, self.empty = head, row, empty

    def render(self, context):
        rows = self.rows.resolve(context, ignore_failures=True)
        if not rows:
            return self.empty.render(context)
        attrs = "".join(
            format_html(' {}="{}"', key, value.resolve(context)) for key, value in self.attrs.items()
        )
        body = []
        with context.push():
            for item in rows:
                context[self.name] = item
                body.append(self.row.render(context))
        head = self.head.render(context).strip()
        return mark_safe(
            f"<table{attrs}>\n  <thead>{head}</thead>\n  <tbody>{''.join(body)}</tbody>\n</table>"
        )


@register.tag("table")
def table(parser, token):
    bits = token.split_contents()
    if len(bits) < 4 or bits[2] != "as":
        raise template.TemplateSyntaxError('usage: {% table rows as row name="value" … %}')
    attrs = token_kwargs(bits[4:], parser)
    if len(attrs) != len(bits[4:]):
        raise template.TemplateSyntaxError(f'table: attributes are name="value": {bits[4:]}')
    head = parser.parse(("row",))
    parser.delete_first_token()
    row = parser.parse(("empty", "endtable"))
    empty = template.NodeList()
    if parser.next_token().contents == "empty":
        empty = parser.parse(("endtable",))
        parser.delete_first_token()
    return TableNode(parser.compile_filter(bits[1]), bits[3], attrs, head, row, empty)
