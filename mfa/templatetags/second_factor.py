"""{% load second_factor %}{% second_factor_card person.uid may.reset_second_factor %}: the
second-factor section of a person's directory page, with the reset button for staff who may."""

from django import template
from django.contrib.auth.models import User

from mfa import services

register = template.Library()


@register.inclusion_tag("mfa/_card.html")
def second_factor_card(uid: str, may_reset: bool) -> dict[str, object]:
    user = User.objects.filter(username=uid).first()
    return {
        "uid": uid,
        "factors": services.factors_of(user) if user is not None else None,
        "may_reset": may_reset,
    }
