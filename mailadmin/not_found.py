"""The project's own "page not found", for every 404, DEBUG or not.

With DEBUG on (the demo, the tests) Django answers a 404 with its technical page, which lists
every URL pattern of the project; in production it renders templates/404.html. This
middleware renders that page in both cases: for addresses no URL pattern matches (checked
before the view runs) and for Http404 raised by a view. It sits inside CommonMiddleware, which
still turns a 404 for "/path" into a redirect to "/path/" where that exists.
"""

from collections.abc import Callable

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotFound
from django.template import loader
from django.urls import Resolver404, get_resolver


def not_found_page(request: HttpRequest) -> HttpResponse:
    return HttpResponseNotFound(loader.render_to_string("404.html", request=request))


class NotFoundMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            get_resolver(getattr(request, "urlconf", None)).resolve(request.path_info)
        except Resolver404:
            return not_found_page(request)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return not_found_page(request) if isinstance(exception, Http404) else None
