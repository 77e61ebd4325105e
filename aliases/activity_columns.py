"""The alias list's activity columns (last mail, mails and refusals in 30 days, a leak warning),
annotated through the reverse relations the activity app defines (daily_counts, leak_flags), so
this app never imports it. Subqueries, not joins: two joined relations would multiply the sums."""

from datetime import timedelta

from django.db.models import F, IntegerField, Max, Model, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.expressions import OrderBy
from django.db.models.functions import Coalesce
from django.utils import timezone

from aliases.models import Alias

# Sort keys for AliasSearchForm: (value, label, ordering).
ACTIVITY_SORTS: list[tuple[str, str, tuple[OrderBy | str, ...]]] = [
    ("last-mail", "last mail", (F("last_mail_at").desc(nulls_last=True), "-id")),
    ("most-mail", "most mail (30 days)", ("-mails_30d", "-id")),
    ("most-refused", "most refused (30 days)", ("-refused_30d", "-id")),
]


def _related(name: str) -> type[Model]:
    model = Alias._meta.get_field(name).related_model
    assert isinstance(model, type) and issubclass(model, Model)
    return model


def with_activity(aliases: QuerySet[Alias]) -> QuerySet[Alias]:
    daily = _related("daily_counts")._default_manager.filter(alias=OuterRef("pk")).order_by().values("alias")
    recent = daily.filter(day__gte=timezone.now().date() - timedelta(days=30))
    open_flags = _related("leak_flags")._default_manager.filter(alias=OuterRef("pk"), dismissed_at__isnull=True)
    zero = Value(0, output_field=IntegerField())
    return aliases.annotate(
        last_mail_at=Subquery(daily.annotate(at=Max("last_at")).values("at")[:1]),
        mails_30d=Coalesce(Subquery(recent.annotate(n=Sum("accepted")).values("n")[:1]), zero),
        refused_30d=Coalesce(Subquery(recent.annotate(n=Sum("refused")).values("n")[:1]), zero),
        leak_domain=Subquery(open_flags.order_by("-flagged_at").values("sender_domain")[:1]),
    )
