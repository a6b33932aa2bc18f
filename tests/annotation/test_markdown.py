import pytest

from annotation.markdown import render_markdown


@pytest.mark.parametrize(
    "source,forbidden,shown",
    [
        pytest.param(
            "<script>alert(1)</script>", "<script", "&lt;script&gt;alert(1)&lt;/script&gt;", id="script"
        ),
        pytest.param(
            "look <img src=x onerror=alert(1)> here", "<img", "&lt;img src=x onerror=alert(1)&gt;", id="img"
        ),
        pytest.param('<div onclick="steal()">block html</div>', "<div", "&lt;div onclick=", id="div"),
        pytest.param("<iframe src=https://evil.example></iframe>", "<iframe", "&lt;iframe", id="iframe"),
        pytest.param("<!-- hidden -->", "<!--", "&lt;!-- hidden --&gt;", id="comment"),
        pytest.param("<svg onload=alert(1)>", "<svg", "&lt;svg onload=alert(1)&gt;", id="svg"),
    ],
)
def test_raw_html_is_shown_as_text(source, forbidden, shown):
    html = render_markdown(source)
    assert forbidden not in html
    assert shown in html


def test_fenced_code_block_is_kept_and_escaped():
    html = render_markdown('Try this:\n\n```python\nx = "<b>" & 1\nif x:\n    print(x)\n```\n')
    assert "<pre><code" in html
    assert "x = &quot;&lt;b&gt;&quot; &amp; 1" in html or 'x = "&lt;b&gt;" &amp; 1' in html
    assert "\n    print(x)" in html  # indentation inside the block survives


def test_inline_markdown_lists_and_line_breaks():
    html = render_markdown("**bold** and *it* and `code <x>`\nnext line\n\n- one\n- two")
    assert "<strong>bold</strong>" in html and "<em>it</em>" in html
    assert "<code>code &lt;x&gt;</code>" in html
    assert "<br>" in html
    assert "<ul>" in html and "<li>one</li>" in html


def test_links_keep_only_safe_schemes_and_get_rel():
    html = render_markdown("[ok](https://example.org) [bad](javascript:alert(1)) [data](data:text/html,x)")
    assert 'href="https://example.org"' in html
    assert "javascript:" not in html and "data:text" not in html
    assert 'rel="noopener noreferrer nofollow"' in html


def test_images_are_not_rendered():
    html = render_markdown("![tracker](https://evil.example/pixel.png)")
    assert "<img" not in html


def test_empty_text():
    assert render_markdown("") == ""
