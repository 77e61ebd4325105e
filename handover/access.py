"""Who may read a handover note: its author, the delegates named in it, and admins.

Helpdesk has no special access; anyone else gets a 404, as if the note did not exist."""

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, Q, QuerySet
from django.http import Http404

from accounts.roles import Role, role_of
from handover.models import HandoverNote, TopicDelegate


def can_read(user: User | AnonymousUser, note: HandoverNote) -> bool:
    if not user.is_authenticated:
        return False
    if note.author_id == user.pk or role_of(user) == Role.ADMIN:
        return True
    return user.get_username() in note.delegate_uids()


def readable_note_or_404(user: User | AnonymousUser, pk: int) -> HandoverNote:
    note = (
        HandoverNote.objects.select_related("author").prefetch_related("topic_delegates", "items").filter(pk=pk).first()
    )
    if note is None or not can_read(user, note):
        raise Http404("No such handover note.")
    return note


def own_note(user: User) -> HandoverNote | None:
    return (
        HandoverNote.objects.select_related("author")
        .prefetch_related("topic_delegates", "items")
        .filter(author=user)
        .first()
    )


def notes_shared_with(uid: str) -> QuerySet[HandoverNote]:
    """Notes naming this uid as primary or per-topic delegate, with their urgent item count."""
    as_topic_delegate = TopicDelegate.objects.filter(delegate_uid=uid).values("note_id")
    return (
        HandoverNote.objects.filter(Q(primary_delegate_uid=uid) | Q(pk__in=as_topic_delegate))
        .select_related("author")
        .prefetch_related("topic_delegates")
        .annotate(urgent_items=Count("items", filter=Q(items__priority="urgent")))
        .order_by("starts_at", "id")
    )
