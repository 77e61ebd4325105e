from django import template

from limits.rules import Limits
from limits.services import effective_limits

register = template.Library()


@register.inclusion_tag("limits/_effective.html")
def effective_sending_limits(uid: str, mail: str) -> dict[str, Limits]:
    return {"limits": effective_limits(uid, mail)}
