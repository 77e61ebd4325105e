from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts import directory
from accounts.forms import UNAVAILABLE
from accounts.roles import Role, role_of
from explain import services
from explain.forms import NOT_OWN, ExplainForm


@require_GET
@login_required
def explain(request: HttpRequest) -> HttpResponse:
    """Helpdesk and admins: any address. Anyone else: their own addresses; another address gets
    the same answer whether it exists or not."""
    assert isinstance(request.user, User)
    staff = role_of(request.user) in (Role.HELPDESK, Role.ADMIN)
    form = ExplainForm(request.GET if "address" in request.GET else None)
    explanation = None
    error = ""
    if form.is_valid():
        address = form.cleaned_data["address"]
        try:
            if staff or services.is_own(request.user, address):
                explanation = services.explain(address, viewer=None if staff else request.user)
            else:
                form.add_error("address", NOT_OWN)
        except directory.DirectoryUnavailable:
            return render(request, "accounts/directory_unavailable.html", {"message": UNAVAILABLE}, status=503)
        except services.ExplainError as exc:
            error = str(exc)
    return render(
        request, "explain/explain.html", {"form": form, "explanation": explanation, "error": error, "staff": staff}
    )
