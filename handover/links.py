"""Where a user's handover note lives, for text shown only inside the organisation.

The vacation responder may put this in the *internal* reply; the external reply must never
carry it (the path tells an outsider who covers what, and the page is for colleagues)."""

from django.urls import reverse

from handover.models import HandoverNote


def note_url_for(uid: str) -> str | None:
    """The absolute path of this user's handover note (e.g. "/handover/12/"), or None."""
    pk = HandoverNote.objects.filter(author__username=uid).values_list("pk", flat=True).first()
    return reverse("handover:detail", args=[pk]) if pk is not None else None
