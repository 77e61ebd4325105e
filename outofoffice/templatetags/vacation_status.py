from django import template
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from outofoffice.models import VacationReply
from outofoffice.status import vacation_status as status_of

register = template.Library()


@register.filter
def vacation_status(vacation: VacationReply | None) -> SafeString:
    """The badge and dates of a vacation reply as the responder sees it now ({% load vacation_status %})."""
    return SafeString(render_to_string("outofoffice/_status.html", {"status": status_of(vacation)}))
