"""Django's form renderer with its plainest widget templates done in Python.

Django renders every widget through its template engine: a <select> of five options is seven
template renders, and a search form of three fields cost ~1.3 ms a page. For the templates below,
and only while the file Django would use still reads exactly as written here, this renderer
builds the same HTML in Python (tests/test_form_renderer.py compares the two for every widget
the project's forms use); any other template, or a changed one, goes through the engine.
"""

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from django.forms.renderers import DjangoTemplates
from django.template import Context
from django.template.base import render_value_in_context
from django.utils.html import escape
from django.utils.safestring import SafeData

WIDGETS = "django/forms/widgets/"
INPUT = '<input type="{{ widget.type }}" name="{{ widget.name }}"{% if widget.value != None %} value="{{ widget.value|stringformat:\'s\' }}"{% endif %}{% include "django/forms/widgets/attrs.html" %}>\n'  # noqa: E501
ATTRS = (
    "{% for name, value in widget.attrs.items %}{% if value is not False %} {{ name }}"
    "{% if value is not True %}=\"{{ value|stringformat:'s' }}\"{% endif %}{% endif %}{% endfor %}"
)
INCLUDES_INPUT = '{% include "django/forms/widgets/input.html" %}\n'
SELECT = (
    '<select name="{{ widget.name }}"{% include "django/forms/widgets/attrs.html" %}>'
    "{% for group_name, group_choices, group_index in widget.optgroups %}{% if group_name %}\n"
    '  <optgroup label="{{ group_name }}">{% endif %}{% for option in group_choices %}\n'
    "  {% include option.template_name with widget=option %}{% endfor %}{% if group_name %}\n"
    "  </optgroup>{% endif %}{% endfor %}\n"
    "</select>\n"
)
OPTION = (
    "<option value=\"{{ widget.value|stringformat:'s' }}\""
    '{% include "django/forms/widgets/attrs.html" %}>{{ widget.label }}</option>\n'
)
TEXTAREA = (
    '<textarea name="{{ widget.name }}"{% include "django/forms/widgets/attrs.html" %}>\n'
    "{% if widget.value %}{{ widget.value }}{% endif %}</textarea>\n"
)
# {{ value }} in a template of the form renderer's engine (autoescape on, the project's USE_TZ).
_VARIABLE = Context(autoescape=True)


def _variable(value: object) -> str:
    return str(render_value_in_context(value, _VARIABLE))


def _formatted(value: object) -> str:
    # {{ value|stringformat:'s' }}: "%s" % value, still safe if the value was (is_safe=True).
    try:
        text = "%s" % (str(value) if isinstance(value, tuple) else value)  # noqa: UP031 -- the filter's own
    except (ValueError, TypeError):
        text = ""
    return text if isinstance(value, SafeData) else escape(text)


def _attrs(widget: Mapping[str, Any]) -> str:
    return "".join(
        f" {_variable(name)}" + ("" if value is True else f'="{_formatted(value)}"')
        for name, value in widget["attrs"].items()
        if value is not False
    )


def _input(widget: Mapping[str, Any]) -> str:
    value = f' value="{_formatted(widget["value"])}"' if widget["value"] != None else ""  # noqa: E711 -- the template's test
    return f'<input type="{_variable(widget["type"])}" name="{_variable(widget["name"])}"{value}{_attrs(widget)}>\n'


def _option(widget: Mapping[str, Any]) -> str:
    return f'<option value="{_formatted(widget["value"])}"{_attrs(widget)}>{_variable(widget["label"])}</option>\n'


def _textarea(widget: Mapping[str, Any]) -> str:
    value = _variable(widget["value"]) if widget["value"] else ""
    return f'<textarea name="{_variable(widget["name"])}"{_attrs(widget)}>\n{value}</textarea>\n'


class WidgetRenderer(DjangoTemplates):
    """settings.FORM_RENDERER: Django's DjangoTemplates renderer, faster for plain widgets."""

    def __init__(self) -> None:
        self._python: dict[str, Callable[[Mapping[str, Any], dict[str, Any]], str] | None] = {}

    def render(self, template_name: str, context: dict[str, Any], request: Any = None) -> str:
        build = self._builder(template_name)
        if build is None or "widget" not in context:
            return super().render(template_name, context, request)
        return build(context["widget"], context).strip()

    def _builder(self, template_name: str) -> Callable[[Mapping[str, Any], dict[str, Any]], str] | None:
        if template_name not in self._python:
            self._python[template_name] = self._python_for(template_name)
        return self._python[template_name]

    def _python_for(self, template_name: str) -> Callable[[Mapping[str, Any], dict[str, Any]], str] | None:
        source = self._source(template_name)
        if source is None:
            return None
        if source == INCLUDES_INPUT and self._source(WIDGETS + "input.html") == INPUT:
            return lambda widget, context: _input(widget) + "\n"
        if self._source(WIDGETS + "attrs.html") != ATTRS:
            return None
        if template_name == WIDGETS + "input.html" and source == INPUT:
            return lambda widget, context: _input(widget)
        if source == OPTION:
            return lambda widget, context: _option(widget)
        if source == TEXTAREA:
            return lambda widget, context: _textarea(widget)
        if source == SELECT:
            return self._select
        return None

    def _select(self, widget: Mapping[str, Any], context: dict[str, Any]) -> str:
        parts = [f'<select name="{_variable(widget["name"])}"{_attrs(widget)}>']
        for group_name, group_choices, _ in widget["optgroups"]:
            if group_name:
                parts.append(f'\n  <optgroup label="{_variable(group_name)}">')
            for option in group_choices:
                parts.append("\n  " + self._included(option["template_name"], {**context, "widget": option}))
            if group_name:
                parts.append("\n  </optgroup>")
        parts.append("\n</select>\n")
        return "".join(parts)

    def _included(self, template_name: str, context: dict[str, Any]) -> str:
        # {% include %}: the template's whole output, its final newline kept.
        build = self._builder(template_name)
        if build is None:
            return str(self.get_template(template_name).render(context))
        return build(context["widget"], context)

    def _source(self, template_name: str) -> str | None:
        """The text of the file the engine would use for this template, if it is a file."""
        try:
            origin = self.get_template(template_name).template.origin  # type: ignore[attr-defined]
            return Path(origin.name).read_text(encoding="utf-8")
        except Exception:  # not found, not a file: the engine renders it
            return None
