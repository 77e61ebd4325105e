"""{% load handover_links %}{% own_handover_url as handover_url %}: the absolute address of the
signed-in person's handover note, or "" (for their vacation page, which suggests linking it in
the reply to colleagues). A tag, so that the vacation app does not import this one: handover
builds on vacation replies (a new note takes their dates), not the other way round."""

from django import template

from handover.links import note_url_for

register = template.Library()


@register.simple_tag(takes_context=True)
def own_handover_url(context: template.Context) -> str:
    request = context.get("request")
    if request is None or not request.user.is_authenticated:
        return ""
    note = note_url_for(request.user.get_username())
    return request.build_absolute_uri(note) if note else ""
