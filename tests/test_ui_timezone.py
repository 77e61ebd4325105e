import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("cookie", "shown"),
    [
        ("America/New_York", "America/New_York"),
        ("Not/AZone", settings.TIME_ZONE),
        ("../../etc/passwd", settings.TIME_ZONE),
        ("/etc/localtime", settings.TIME_ZONE),
        ("Europe/Berlin\x00", settings.TIME_ZONE),
        ("x" * 200, settings.TIME_ZONE),
        ("", settings.TIME_ZONE),
    ],
)
def test_pages_use_the_browsers_time_zone_when_it_is_a_real_one(sign_in, cookie, shown) -> None:
    client = sign_in("end user")
    # The raw Cookie header, as a browser would send it: http.cookies refuses to build one
    # holding a control character on some Python patch levels, but a request can still carry it.
    sent = "; ".join([*(f"{name}={morsel.value}" for name, morsel in client.cookies.items()), f"tz={cookie}"])
    html = client.get("/", HTTP_COOKIE=sent).content.decode()
    assert f'Times are shown in <span class="tz">{shown}</span>' in html


def test_time_zone_of_one_request_does_not_leak_into_the_next(sign_in) -> None:
    client = sign_in("end user")
    client.cookies["tz"] = "Asia/Tokyo"
    assert "Asia/Tokyo" in client.get("/").content.decode()
    del client.cookies["tz"]
    assert f'<span class="tz">{settings.TIME_ZONE}</span>' in client.get("/").content.decode()
