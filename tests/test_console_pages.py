"""Plain pages for people: the project's own 404 page everywhere (never Django's technical
one, which lists every URL pattern), the publication page in plain words, error summaries."""

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from aliases.models import MapGeneration, MapPublication
from outofoffice.models import VacationReply

pytestmark = pytest.mark.django_db

TECHNICAL = ("Using the URLconf", "Django tried these URL patterns", "technical_404", "Raised by:")


def _is_our_404(response: Any) -> None:
    assert response.status_code == 404
    html = response.content.decode()
    assert "<h1>Page not found</h1>" in html
    assert not any(marker in html for marker in TECHNICAL), html[:500]


@pytest.mark.parametrize("path", ["/no/such/page/", "/directory/users/UPPER/", "/aliases/12/x/"])
def test_an_address_nobody_serves_gets_the_projects_404_page(client: Client, sign_in: Any, path: str) -> None:
    _is_our_404(client.get(path))
    _is_our_404(sign_in("admin").get(path))


def test_a_view_that_finds_nothing_answers_with_the_projects_404_page(sign_in: Any) -> None:
    admin = sign_in("admin")
    _is_our_404(admin.get("/directory/users/nosuchperson/"))
    _is_our_404(sign_in().get("/aliases/123456/"))  # somebody else's alias, or none: the same


def test_a_missing_slash_still_redirects(client: Client) -> None:
    response = client.get("/accounts/sign-in")
    assert response.status_code == 301 and response["Location"] == "/accounts/sign-in/"


def test_the_publication_page_says_in_plain_words_that_the_tables_are_current(sign_in: Any) -> None:
    MapGeneration.objects.update_or_create(pk=1, defaults={"requested": 3})
    for host in settings.MAP_HOSTS:
        MapPublication.objects.update_or_create(
            host=host, defaults={"published_generation": 3, "last_success_at": timezone.now() - timedelta(minutes=2)}
        )
    html = sign_in("admin").get("/aliases/publication/").content.decode()
    assert "Mail server tables are up to date (published" in html and "2\xa0minutes ago</time>)." in html
    # The generations and map files are there for whoever opens the fold.
    fold = html[html.index('<details class="card technical-detail">') :]
    assert "Generation requested: <strong>3</strong>" in fold


def test_a_failing_publication_is_said_plainly_with_the_detail_open(sign_in: Any) -> None:

    host = settings.MAP_HOSTS[0]
    MapPublication.objects.update_or_create(host=host, defaults={"last_error": "postmap hash: failed"})
    html = sign_in("admin").get("/aliases/publication/").content.decode()
    assert f"could not be updated on {host}" in html
    assert '<details class="card technical-detail" open>' in html and "postmap hash: failed" in html


def test_a_long_form_with_wrong_fields_summarises_them_at_the_top(sign_in: Any) -> None:
    admin = sign_in("admin")
    response = admin.post(
        "/directory/new/",
        {
            "uid": "Bad Uid",
            "name": "Jane Doe",
            "mail": "not-an-address",
            "new_password": "x",
            "new_password_again": "y",
        },  # noqa: E501
    )
    html = response.content.decode()
    summary = html[html.index('<div class="error-summary" tabindex="-1" autofocus>') :]
    summary = summary[: summary.index("</div>")]
    assert '<a href="#id_uid">User name (uid)</a>' in summary and '<a href="#id_mail">Mailbox address</a>' in summary
    assert "Full name" not in summary  # only the fields that need a change
    assert html.index("error-summary") < html.index('name="uid"')


def test_a_short_form_has_no_summary(client: Client) -> None:
    response = client.post("/accounts/sign-in/", {"username": "", "password": ""})
    assert "error-summary" not in response.content.decode()


def test_the_vacation_check_asks_who_is_writing_and_folds_the_headers_away(sign_in: Any) -> None:
    client = sign_in()
    person = client.directory_user
    VacationReply.objects.create(uid=person.uid, address=person.mail, enabled=True, subject="Away", body="Back soon.")
    page = client.get("/out-of-office/vacation/preview/").content.decode()
    assert "Who is writing?" in page
    assert '<details class="technical-detail">' in page and page.index("<details") < page.index('name="headers"')
    # Only the writer given: an ordinary message to the mailbox, which gets the reply.
    answer = client.post("/out-of-office/vacation/preview/", {"sender": "friend@outside.example"}).content.decode()
    assert "A vacation reply would go out" in answer
    list_mail = client.post(
        "/out-of-office/vacation/preview/",
        {"sender": "news@outside.example", "headers": f"To: {person.mail}\nList-Id: <news.outside.example>"},
    ).content.decode()
    assert "came through a mailing list" in list_mail and '<details class="technical-detail" open>' in list_mail
