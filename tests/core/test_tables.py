"""The list pages' one table tag (core/templatetags/tables.py)."""

import pytest
from django.template import Context, Template, TemplateSyntaxError

TABLE = Template(
    '{% load tables %}{% table rows as r id="runs" class=kind %}<tr><th>N</th></tr>'
    "{% row %}<tr><td>{{ r }}</td></tr>"
    '{% empty %}<p class="muted">No rows yet.</p>{% endtable %}'
)


def test_a_header_a_row_per_item_and_escaped_attributes():
    html = TABLE.render(Context({"rows": ["a", "<b>"], "kind": 'x"y', "r": "outer"}))
    assert html == (
        '<table id="runs" class="x&quot;y">\n  <thead><tr><th>N</th></tr></thead>\n'
        "  <tbody><tr><td>a</td></tr><tr><td>&lt;b&gt;</td></tr></tbody>\n</table>"
    )


def test_without_rows_only_the_empty_part():
    assert TABLE.render(Context({"rows": []})) == '<p class="muted">No rows yet.</p>'
    assert TABLE.render(Context({})) == '<p class="muted">No rows yet.</p>'
    bare = Template("{% load tables %}{% table rows as r %}<tr></tr>{% row %}<tr></tr>{% endtable %}")
    assert bare.render(Context({"rows": []})) == ""


def test_the_loop_name_does_not_leak_out_of_the_table():
    t = Template("{% load tables %}{% table rows as r %}{% row %}{{ r }}{% endtable %}[{{ r }}]")
    assert t.render(Context({"rows": [1, 2], "r": "outer"})).endswith("[outer]")


@pytest.mark.parametrize(
    "source",
    [
        "{% table rows %}{% row %}{% endtable %}",
        "{% table rows as r class %}{% row %}{% endtable %}",
        "{% table rows as r %}{% endtable %}",
    ],
)
def test_malformed_tables_are_template_errors(source):
    with pytest.raises(TemplateSyntaxError):
        Template("{% load tables %}" + source)
