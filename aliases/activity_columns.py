"""The alias list's activity figures (last mail, mails and refusals in 30 days, a leak warning),
annotated through the reverse relations the activity app defines (daily_counts, leak_flags), so
this app never imports it. Subqueries, not joins: two joined relations would multiply the sums.

The list's open tables take them from here as plain data: sort keys (AliasSearchForm.SORTS),
the "possibly leaked" filter (AliasSearchForm.STATES) and the columns (aliases/listing.py)."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from django.db.models import (
    DateTimeField,
    Exists,
    IntegerField,
    Max,
    Model,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from aliases.models import Alias

NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # sorts an alias that never got mail before every other

# Sort key: (label, ordering). Activity columns link descending first (the busiest, the latest).
ACTIVITY_SORTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "last_mail": ("last mail", ("last_mail_sort", "id")),
    "mails": ("mails in 30 days", ("mails_30d", "id")),
    "refused": ("refused in 30 days", ("refused_30d", "id")),
}
# Sort names an earlier list used, still understood in bookmarks.
ACTIVITY_OLD_SORTS = {"last-mail": "-last_mail", "most-mail": "-mails", "most-refused": "-refused"}


def _related(name: str) -> type[Model]:
    model = Alias._meta.get_field(name).related_model
    assert isinstance(model, type) and issubclass(model, Model)
    return model


def _possibly_leaked(now: datetime) -> Q:
    flags = _related("leak_flags")._default_manager.filter(alias=OuterRef("pk"), dismissed_at__isnull=True)
    return Q(Exists(flags))


ACTIVITY_STATES: dict[str, tuple[str, Callable[[datetime], Q]]] = {"leaked": ("possibly leaked", _possibly_leaked)}


def with_activity(aliases: QuerySet[Alias]) -> QuerySet[Alias]:
    daily = _related("daily_counts")._default_manager.filter(alias=OuterRef("pk")).order_by().values("alias")
    recent = daily.filter(day__gte=timezone.now().date() - timedelta(days=30))
    open_flags = _related("leak_flags")._default_manager.filter(alias=OuterRef("pk"), dismissed_at__isnull=True)
    zero = Value(0, output_field=IntegerField())
    last_mail = Subquery(daily.annotate(at=Max("last_at")).values("at")[:1])
    return aliases.annotate(
        last_mail_at=last_mail,
        last_mail_sort=Coalesce(last_mail, Value(NEVER, output_field=DateTimeField())),
        mails_30d=Coalesce(Subquery(recent.annotate(n=Sum("accepted")).values("n")[:1]), zero),
        refused_30d=Coalesce(Subquery(recent.annotate(n=Sum("refused")).values("n")[:1]), zero),
        leak_domain=Subquery(open_flags.order_by("-flagged_at").values("sender_domain")[:1]),
    )
