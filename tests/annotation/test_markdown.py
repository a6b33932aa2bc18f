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
    assert "<ul>" in html and '<li dir="auto">one</li>' in html


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


def test_blocks_take_their_direction_from_their_own_text():
    """Item 18: each paragraph, item, heading and cell is dir="auto", so a Hebrew paragraph after
    an English one is laid out right to left."""
    html = render_markdown("Hello\n\nשלום\n\n- one\n\n# Title\n\n> quoted")
    assert '<p dir="auto">Hello</p>' in html and '<p dir="auto">שלום</p>' in html
    assert '<li dir="auto">one</li>' in html and '<h1 dir="auto">Title</h1>' in html
    assert "<blockquote" in html


def test_response_html_is_cached_by_text():
    """Item 18: one render per text; the key changes with the text (and the renderer)."""
    from annotation.markdown import markdown_key

    assert markdown_key("a") == markdown_key("a") != markdown_key("b")
    assert len(markdown_key("a")) <= 40
