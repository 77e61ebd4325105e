"""{% load vacation_editor %}{% vacation_editor person may.vacation %}: the vacation section of
a person's directory page; staff who may set that person's reply edit it right there (the form
posts to outofoffice:helpdesk_user, which comes back to the page)."""

from django import template

from accounts.directory import DirectoryUser
from outofoffice.forms import VacationForm
from outofoffice.models import VacationReply

register = template.Library()


@register.inclusion_tag("outofoffice/_vacation_editor.html", takes_context=True)
def vacation_editor(context: template.Context, person: DirectoryUser, may_edit: bool) -> dict[str, object]:
    vacation = VacationReply.objects.filter(uid=person.uid).first()
    request = context.get("request")
    return {
        "person": person,
        "vacation": vacation,
        "may_edit": may_edit,
        "form": VacationForm(instance=vacation or VacationReply(uid=person.uid, address=person.mail))
        if may_edit
        else None,
        "next": request.path if request is not None else "",
        "csrf_token": context.get("csrf_token"),
    }
