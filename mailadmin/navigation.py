"""Template tags for the shared layout: {% load navigation %}.

{% navigation %}…{% nav_link "aliases:list" "Aliases" %}…{% endnavigation %} marks the one
link whose address is the longest prefix of the current page with aria-current="page", so
/aliases/domains/ marks "Domains" and not also "Aliases".
"""

from functools import lru_cache

from django import template
from django.template.base import NodeList, Parser, Token
from django.urls import get_script_prefix, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

_COLLECTED = "_navigation_hrefs"
_CURRENT = "_navigation_current"


@lru_cache(maxsize=256)
def _href(script_prefix: str, url_name: str) -> str:
    # The menu renders on every page (twice, see NavigationNode); its addresses never change.
    return reverse(url_name)


def _matches(path: str, href: str) -> bool:
    return path == href if href == "/" else path.startswith(href)


class NavigationNode(template.Node):
    def __init__(self, nodelist: NodeList) -> None:
        self.nodelist = nodelist

    def render(self, context: template.Context) -> SafeString:
        request = context.get("request")
        path = request.path if request is not None else ""
        hrefs: list[str] = []
        with context.push({_COLLECTED: hrefs, _CURRENT: None}):
            self.nodelist.render(context)  # first pass only collects the links' addresses
        current = max((href for href in hrefs if _matches(path, href)), key=len, default=None)
        with context.push({_COLLECTED: None, _CURRENT: current}):
            return self.nodelist.render(context)


@register.tag
def navigation(parser: Parser, token: Token) -> NavigationNode:
    nodelist = parser.parse(("endnavigation",))
    parser.delete_first_token()
    return NavigationNode(nodelist)


@register.simple_tag(takes_context=True)
def nav_link(context: template.Context, url_name: str, label: str) -> str:
    href = _href(get_script_prefix(), url_name)
    collected = context.get(_COLLECTED)
    if collected is not None:
        collected.append(href)
        return ""
    if _CURRENT in context:
        current = context[_CURRENT] == href
    else:  # outside {% navigation %}: plain prefix match
        request = context.get("request")
        current = request is not None and _matches(request.path, href)
    if current:
        return format_html('<a href="{}" aria-current="page">{}</a>', href, label)
    return format_html('<a href="{}">{}</a>', href, label)
