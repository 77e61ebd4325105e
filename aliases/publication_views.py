"""The admin page showing how far each mail host has published the Postfix maps."""

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.roles import admin_required
from aliases import publication
from aliases.models import MapGeneration, MapPublication
from audit.models import record_event


@admin_required
def publication_status(request: HttpRequest) -> HttpResponse:
    generation = MapGeneration.objects.filter(pk=1).first()
    requested = generation.requested if generation else 0
    known = {state.host: state for state in MapPublication.objects.all()}
    # Hosts that should publish but never did still get a row on the page.
    hosts = [known.pop(host) if host in known else MapPublication(host=host) for host in settings.MAP_HOSTS]
    hosts += known.values()
    rows = [
        {
            "state": state,
            "behind": max(requested - state.published_generation, 0),
            "counts": [(name, state.line_counts.get(name)) for name in settings.POSTFIX_MAPS],
        }
        for state in hosts
    ]
    context = {
        "summary": _summary(rows),
        "requested": requested,
        "generation": generation,
        "rows": rows,
        "map_dir": settings.POSTFIX_MAP_DIR,
        "reconcile_interval": settings.MAP_RECONCILE_INTERVAL,
    }
    return render(request, "aliases/publication.html", context)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The state of all hosts in one phrase for people: failing, never, behind or up to date,
    with when the least recent host last published."""
    states = [row["state"] for row in rows]
    failing = [state.host for state in states if state.last_error]
    if failing:
        return {"kind": "failing", "hosts": failing}
    if not states or any(state.last_success_at is None for state in states):
        return {"kind": "never"}
    behind = [row["state"].host for row in rows if row["behind"]]
    published_at = min(state.last_success_at for state in states)
    return {"kind": "behind" if behind else "current", "hosts": behind, "published_at": published_at}


@require_POST
@admin_required
def publication_publish(request: HttpRequest) -> HttpResponse:
    # Counts as a change: every host publishes, and the reconcile retries until it succeeds.
    with transaction.atomic():
        publication.request_publication("publish requested on the admin page")
        record_event("maps.publish_requested", request=request, target="postfix maps")
    messages.success(request, "A publication was queued on every mail host.")
    return redirect("aliases:publication")
