import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import RequestFactory, override_settings
from whitenoise.middleware import WhiteNoiseMiddleware

TEMPLATES = Path(settings.BASE_DIR) / "templates"
INLINE = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),
    "style element": re.compile(r"<style\b", re.I),
    "style attribute": re.compile(r"\sstyle\s*=", re.I),
    "event handler attribute": re.compile(r"\son[a-z]+\s*=", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
}


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_templates_have_no_inline_script_or_style_for_the_content_security_policy(template: Path) -> None:
    text = template.read_text()
    found = [name for name, pattern in INLINE.items() if pattern.search(text)]
    assert found == []


def test_collectstatic_gathers_the_stylesheet_script_and_icon_for_whitenoise(tmp_path) -> None:
    with override_settings(STATIC_ROOT=tmp_path, DEBUG=False):
        call_command("collectstatic", "--noinput", verbosity=0)
        for name in ("css/mailadmin.css", "js/mailadmin.js", "favicon.svg"):
            assert (tmp_path / name).is_file(), name
        # What production does: WhiteNoise answers from STATIC_ROOT, before Django's views.
        middleware = WhiteNoiseMiddleware(lambda request: pytest.fail("reached Django for a static file"))
        response = middleware(RequestFactory().get("/static/js/mailadmin.js"))
        assert response.status_code == 200
        assert b"data-confirm" in b"".join(response.streaming_content)


def test_static_root_defaults_to_the_state_directory() -> None:
    assert Path(settings.STATIC_ROOT) == Path(settings.STATE_DIR) / "static"
