"""The form renderer (mailadmin/form_renderer.py) gives exactly the HTML of Django's own, for
every widget of every form in the project and for hostile values."""

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django import forms
from django.conf import settings
from django.forms.renderers import DjangoTemplates
from django.utils.safestring import mark_safe

from mailadmin.form_renderer import WidgetRenderer

HOSTILE = ["", "plain", '<script>alert("x")</script>', "a & b 'quoted'", mark_safe("<b>safe</b>"), 0, 3.5, None]


def _project_forms() -> Iterator[type[forms.Form]]:
    apps = sorted(path.parent.name for path in Path(settings.BASE_DIR).glob("*/forms.py"))
    for app in apps:
        importlib.import_module(f"{app}.forms")
    seen: set[type[Any]] = set()
    pending: list[type[Any]] = [forms.Form, forms.ModelForm]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                pending.append(sub)
                if sub.__module__.split(".")[0] in apps:
                    yield sub


def _widgets() -> Iterator[tuple[str, forms.Widget]]:
    for form in _project_forms():
        for name, field in form.base_fields.items():
            yield f"{form.__module__}.{form.__name__}.{name}", field.widget
    choices = [("", "any"), ("a", "A <1>"), ("Group", [("b", "B"), ("c", mark_safe("<i>C</i>"))])]
    yield "select with groups", forms.Select(choices=choices)
    yield "select multiple", forms.SelectMultiple(choices=choices)
    yield "radio", forms.RadioSelect(choices=choices)
    yield "checkbox", forms.CheckboxInput()
    yield "textarea", forms.Textarea()
    yield "hidden", forms.HiddenInput()
    yield "password", forms.PasswordInput(render_value=True)
    yield "number", forms.NumberInput(attrs={"min": 0, "step": 0.5})


WIDGETS = list(_widgets())


def test_the_project_has_forms_to_compare() -> None:
    assert len(WIDGETS) > 50


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "widget"), WIDGETS, ids=[name for name, _ in WIDGETS])
def test_every_widget_renders_as_django_renders_it(name: str, widget: forms.Widget) -> None:
    django_renderer, ours = DjangoTemplates(), WidgetRenderer()
    attrs_variants = [
        None,
        {"id": "id_x", "required": True, "disabled": False, "aria-describedby": 'h"1 <x>', "data-n": 0},
    ]
    for value in [*HOSTILE, "a", "b", ["a", "c"]]:
        for attrs in attrs_variants:
            try:
                expected = widget.render("field", value, attrs=attrs, renderer=django_renderer)
            except TypeError:  # a value this widget cannot show (a number for a list of them)
                with pytest.raises(TypeError):
                    widget.render("field", value, attrs=attrs, renderer=ours)
                continue
            assert widget.render("field", value, attrs=attrs, renderer=ours) == expected, (name, value, attrs)


def test_plain_widgets_are_built_without_the_template_engine(monkeypatch) -> None:
    ours = WidgetRenderer()
    forms.Select(choices=[("a", "A")]).render("x", "a", renderer=ours)
    forms.TextInput().render("y", "v", renderer=ours)

    def refused(*args: object, **kwargs: object) -> str:
        raise AssertionError("rendered through the template engine")

    monkeypatch.setattr(DjangoTemplates, "render", refused)
    assert forms.Select(choices=[("a", "A")]).render("x", "a", renderer=ours).startswith('<select name="x">')
    assert forms.TextInput().render("y", "v", renderer=ours) == '<input type="text" name="y" value="v">'
