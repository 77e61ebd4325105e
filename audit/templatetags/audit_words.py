"""{% load audit_words %}{{ event.action|action_name }}: an audit action in words for people."""

from django import template

from audit import actions

register = template.Library()
register.filter("action_name", actions.action_name)
