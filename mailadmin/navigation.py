"""Template tags for the shared layout: {% load navigation %}.

{% navigation %}…{% nav_link "aliases:list" "Aliases" %}…{% endnavigation %} marks the one
link whose address is the longest prefix of the current page with aria-current="page", so
/aliases/domains/ marks "Domains" and not also "Aliases".
"""

import re
from functools import lru_cache

from django import template
from django.template.base import NodeList, Parser, Token
from django.urls import get_script_prefix, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

_COLLECTED = "_navigation_links"
# What a link inside {% navigation %} leaves in the output until the current one is known.
_MARKER = re.compile("\x00nav([0-9]+)\x00")


@lru_cache(maxsize=256)
def _href(script_prefix: str, url_name: str) -> str:
    # The menu renders on every page; its addresses never change.
    return reverse(url_name)


def _matches(path: str, href: str) -> bool:
    return path == href if href == "/" else path.startswith(href)


def _link(href: str, label: str, current: bool) -> SafeString:
    if current:
        return format_html('<a href="{}" aria-current="page">{}</a>', href, label)
    return format_html('<a href="{}">{}</a>', href, label)


class NavigationNode(template.Node):
    def __init__(self, nodelist: NodeList) -> None:
        self.nodelist = nodelist

    def render(self, context: template.Context) -> SafeString:
        request = context.get("request")
        path = request.path if request is not None else ""
        links: list[tuple[str, str]] = []
        with context.push({_COLLECTED: links}):
            # One pass: each link shown leaves a marker, replaced once all of them are known.
            rendered = self.nodelist.render(context)
        current = max((href for href, _ in links if _matches(path, href)), key=len, default=None)
        return mark_safe(  # noqa: S308 -- the markup rendered above, links built by format_html
            _MARKER.sub(lambda marker: _link(*links[int(marker[1])], links[int(marker[1])][0] == current), rendered)
        )


@register.tag
def navigation(parser: Parser, token: Token) -> NavigationNode:
    nodelist = parser.parse(("endnavigation",))
    parser.delete_first_token()
    return NavigationNode(nodelist)


@register.simple_tag(takes_context=True)
def nav_link(context: template.Context, url_name: str, label: str) -> SafeString:
    href = _href(get_script_prefix(), url_name)
    collected = context.get(_COLLECTED)
    if collected is not None:
        collected.append((href, label))
        return mark_safe(f"\x00nav{len(collected) - 1}\x00")  # noqa: S308 -- digits only
    # Outside {% navigation %}: plain prefix match.
    request = context.get("request")
    return _link(href, label, request is not None and _matches(request.path, href))
