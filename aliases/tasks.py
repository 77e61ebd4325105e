"""The directory sync: a `mail` changed, removed or deleted by any LDAP tool reaches the
Postfix tables without anyone signing in."""

from celery import shared_task
from django.contrib.auth.models import User

from aliases.postfix_feature import directory_mailboxes, mailboxes_fingerprint
from postfix.publication import note_directory


@shared_task(ignore_result=True)
def sync_directory() -> str:
    """Periodic (beat, every DIRECTORY_SYNC_SECONDS). Only a change publishes."""
    mailboxes = directory_mailboxes()
    if not note_directory(mailboxes_fingerprint(mailboxes)):
        return "unchanged"
    # The user rows are a cache of the directory: refresh the ones that differ.
    for pk, uid, email in User.objects.values_list("pk", "username", "email"):
        if uid in mailboxes and mailboxes[uid] != email:
            User.objects.filter(pk=pk).update(email=mailboxes[uid])
    return "requested"
