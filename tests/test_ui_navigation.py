import re

import pytest

pytestmark = pytest.mark.django_db


def _current(html: str) -> list[str]:
    return re.findall(r'<a href="([^"]+)" aria-current="page">', html)


@pytest.mark.parametrize(
    ("path", "current"),
    [
        ("/", "/"),
        ("/aliases/", "/aliases/"),
        ("/aliases/new/site/", "/aliases/"),
        ("/aliases/domains/", "/aliases/domains/"),  # not also "Aliases"
        ("/audit/?actor=alice", "/audit/"),
        ("/out-of-office/helpdesk/", "/out-of-office/helpdesk/"),
    ],
)
def test_exactly_one_menu_entry_is_marked_current_the_closest_one(sign_in, path, current) -> None:
    admin = sign_in("admin")
    assert _current(admin.get(path).content.decode()) == [current]


@pytest.mark.parametrize(
    ("role", "shown", "hidden"),
    [
        ("end user", ["/aliases/", "/out-of-office/vacation/", "/accounts/password/"], ["/audit/", "/directory/"]),
        ("helpdesk", ["/directory/", "/out-of-office/helpdesk/"], ["/audit/", "/aliases/domains/"]),
        ("admin", ["/directory/", "/audit/", "/aliases/domains/", "/aliases/publication/"], []),
    ],
)
def test_menu_offers_only_what_the_role_may_open(sign_in, role, shown, hidden) -> None:
    client = sign_in(role)
    html = client.get("/").content.decode()
    nav = html[html.index('<nav class="site-nav"') : html.index("</nav>")]
    for href in shown:
        assert f'href="{href}"' in nav
        assert client.get(href).status_code == 200
    for href in hidden:
        assert f'href="{href}"' not in nav
        assert client.get(href).status_code == 403
