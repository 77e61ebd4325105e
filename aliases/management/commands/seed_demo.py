import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts import directory
from aliases.addresses import normalize_domain
from aliases.models import Domain
from audit.models import record_event
from postfix.publication import request_publication

DEMO_USERS = (
    # uid, given name, surname, group
    ("alice", "Alice", "Archer", None),
    ("bob", "Bob", "Baker", None),
    ("hank", "Hank", "Helper", "helpdesk"),
    ("ada", "Ada", "Admin", "admin"),
)


class Command(BaseCommand):
    help = "Create the demo directory users (once) and print their passwords."

    def handle(self, *args: Any, **options: Any) -> None:
        created = []
        for uid, given, sn, group in DEMO_USERS:
            if directory.get_user(uid) is not None:
                continue
            password = secrets.token_urlsafe(9)
            directory.create_user(
                uid=uid,
                cn=f"{given} {sn}",
                sn=sn,
                given_name=given,
                mail=f"{uid}@{settings.MAIL_DOMAIN}",
                password=password,
            )
            if group == "admin":
                directory.add_to_group(uid, settings.LDAP_ADMIN_GROUP_DN)
            elif group == "helpdesk":
                directory.add_to_group(uid, settings.LDAP_HELPDESK_GROUP_DN)
            created.append((uid, group or "end user", password))
        if created:
            self.stdout.write("Demo users (passwords are shown this once):")
            for uid, role, password in created:
                self.stdout.write(f"  {uid:<8} {role:<9} {password}")
        else:
            self.stdout.write("Demo users already exist; their passwords were printed when they were created.")
        self._seed_domains()

    def _seed_domains(self) -> None:
        # Aliases: the demo's mailbox domain and alias domain, if missing (checked like the admin form's).
        for setting, is_alias_domain in ((settings.MAIL_DOMAIN, False), (settings.ALIAS_DOMAIN, True)):
            name = normalize_domain(setting)
            with transaction.atomic():
                _, created = Domain.objects.get_or_create(name=name, defaults={"is_alias_domain": is_alias_domain})
                if created:
                    record_event("domain.create", target=name, detail="demo seed")
                    request_publication(f"demo domain: {name}")
                    self.stdout.write(f"Domain {name} created ({'alias' if is_alias_domain else 'mailbox'} domain).")
