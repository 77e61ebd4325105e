from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.roles import admin_required
from audit.models import record_event
from handover.access import notes_shared_with, own_note, readable_note_or_404
from handover.forms import NoteForm, NoteSearchForm, TopicDelegateFormSet, WorkItemFormSet, describe, save_note
from handover.models import HandoverNote
from outofoffice.models import VacationReply

# "Save and add another ..." buttons: where to land after saving.
ADD_ANCHORS = {"item": "#new-item", "topic": "#new-topic"}
NOTES_PER_PAGE = 50


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


@login_required
def mine(request: HttpRequest) -> HttpResponse:
    note = own_note(_user(request))
    items = note.ordered_items() if note else []
    return render(request, "handover/mine.html", {"note": note, "items": items})


@login_required
@require_http_methods(["GET", "POST"])
def edit(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    uid = user.get_username()
    existing = own_note(user)
    note = existing or HandoverNote(author=user)
    data = request.POST if request.method == "POST" else None
    absence = VacationReply.objects.filter(uid=uid).values_list("starts_at", "ends_at").first() or (None, None)
    form = NoteForm(data, instance=note, author_uid=uid, absence=absence)
    topics = TopicDelegateFormSet(data, instance=note, prefix="topics", form_kwargs={"author_uid": uid})
    items = WorkItemFormSet(data, instance=note, prefix="items")
    if data is not None and all([form.is_valid(), topics.is_valid(), items.is_valid()]):
        note = save_note(form, topics, items)
        note = own_note(user) or note
        action = "handover.update" if existing else "handover.create"
        record_event(action, request=request, target=uid, detail=describe(note))
        messages.success(request, "Your handover note is saved.")
        anchor = ADD_ANCHORS.get(request.POST.get("add", ""))
        return redirect(reverse("handover:edit") + anchor) if anchor else redirect("handover:mine")
    return render(request, "handover/edit.html", {"form": form, "topics": topics, "items": items, "note": existing})


@login_required
@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    note = own_note(user)
    if note is None:
        return redirect("handover:mine")
    if request.method == "POST":
        detail = describe(note)
        note.delete()
        record_event("handover.delete", request=request, target=user.get_username(), detail=detail)
        messages.success(request, "Your handover note is deleted.")
        return redirect("handover:mine")
    return render(request, "handover/delete.html", {"note": note})


@login_required
def shared(request: HttpRequest) -> HttpResponse:
    uid = _user(request).get_username()
    return render(request, "handover/shared.html", {"notes": notes_shared_with(uid), "uid": uid})


@login_required
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    note = readable_note_or_404(request.user, pk)
    return render(request, "handover/detail.html", {"note": note, "items": note.ordered_items()})


@login_required
def printable(request: HttpRequest, pk: int) -> HttpResponse:
    note = readable_note_or_404(request.user, pk)
    return render(request, "handover/print.html", {"note": note, "items": note.ordered_items()})


@admin_required
def all_notes(request: HttpRequest) -> HttpResponse:
    """Every note, for admins: who is away, until when, and who stands in."""
    search = NoteSearchForm(request.GET)
    notes = HandoverNote.objects.select_related("author").annotate(
        item_count=Count("items", distinct=True),
        urgent_items=Count("items", filter=Q(items__priority="urgent"), distinct=True),
    )
    if not search.is_valid():
        notes = notes.none()  # a refused search shows its error, not every note
    elif query := search.query:
        notes = notes.filter(
            Q(author__username__icontains=query)
            | Q(author__first_name__icontains=query)
            | Q(author__last_name__icontains=query)
            | Q(primary_delegate_uid__icontains=query)
            | Q(primary_delegate_name__icontains=query)
        )
    page = Paginator(notes.order_by("-ends_at", "id"), NOTES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "handover/all.html", {"page": page, "search": search, "query": search.query})
