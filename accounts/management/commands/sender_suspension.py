"""Suspend, reinstate and list senders from the shell (abuse scripts, or when the web is down).

manage.py sender_suspension suspend UID --as ADMIN --reason TEXT [--until "YYYY-MM-DD HH:MM"]
manage.py sender_suspension reinstate UID --as ADMIN
manage.py sender_suspension list
The same form and service as the web pages; --as names the admin the audit log records.
"""

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import directory, suspension
from accounts.forms import SuspendForm
from accounts.models import SenderSuspension


def _admin(uid: str) -> User:
    try:
        admins = directory.group_member_uids(settings.LDAP_ADMIN_GROUP_DN)
    except directory.DirectoryUnavailable as exc:
        raise CommandError(str(exc)) from None
    if uid not in admins:
        raise CommandError(f"{uid!r} is not an admin (member of {settings.LDAP_ADMIN_GROUP_DN})")
    return User.objects.get_or_create(username=uid)[0]


class Command(BaseCommand):
    help = "Suspend, reinstate or list senders."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        suspend = sub.add_parser("suspend")
        suspend.add_argument("uid")
        suspend.add_argument("--as", dest="admin", required=True)
        suspend.add_argument("--reason", required=True)
        suspend.add_argument("--until", default="", help='"YYYY-MM-DD HH:MM" in TIME_ZONE; empty: until reinstated')
        reinstate = sub.add_parser("reinstate")
        reinstate.add_argument("uid")
        reinstate.add_argument("--as", dest="admin", required=True)
        sub.add_parser("list")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            for row in SenderSuspension.objects.active().order_by("uid"):
                until = row.until.isoformat() if row.until else "until reinstated"
                self.stdout.write(f"{row.uid}\t{row.mail}\t{until}\tby {row.created_by_name}")
            return
        admin = _admin(options["admin"])
        try:
            if action == "suspend":
                form = SuspendForm({"reason": options["reason"], "until": options["until"]})
                if not form.is_valid():
                    errors = "; ".join(f"{field}: {' '.join(str(m) for m in e)}" for field, e in form.errors.items())
                    raise CommandError(errors)
                suspension.suspend(options["uid"], form.cleaned_data["reason"], form.cleaned_data["until"], admin)
                self.stdout.write(f"{options['uid']} is suspended.")
            elif suspension.reinstate(options["uid"], admin):
                self.stdout.write(f"{options['uid']} is reinstated.")
            else:
                self.stdout.write(f"{options['uid']} was not suspended.")
        except suspension.SuspensionError as exc:
            raise CommandError(str(exc)) from None
