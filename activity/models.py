"""What arrives at each alias, who may not send to it, and which aliases look leaked.

The policy service (policy/) reads the blocks and writes the counts; counts from several mail
hosts sharing the database add up (each host adds its own increments)."""

from django.conf import settings
from django.db import models

from aliases.models import Alias


class SenderBlock(models.Model):
    """Mail from this sender address (or any address at this domain and its subdomains) is
    refused at RCPT: to one alias, to all of a person's aliases and mailbox, or organisation-wide."""

    class Scope(models.TextChoices):
        ALIAS = "alias", "this alias"
        ACCOUNT = "account", "all my addresses"
        ORGANISATION = "organisation", "the whole organisation"

    scope = models.CharField(max_length=12, choices=Scope.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="sender_blocks"
    )
    alias = models.ForeignKey(Alias, null=True, blank=True, on_delete=models.CASCADE, related_name="sender_blocks")
    # Lower-case; an address (local@domain) or, when is_domain, a domain name.
    sender = models.CharField(max_length=320)
    is_domain = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True, help_text="uid of who made the block")
    # Mails this block refused (added by the policy service's flushes, across hosts).
    stopped = models.BigIntegerField(default=0)
    last_stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "scope"]), models.Index(fields=["scope"])]

    def __str__(self) -> str:
        return f"{self.scope} block of {self.shown}"

    @property
    def shown(self) -> str:
        return f"anyone at {self.sender}" if self.is_domain else self.sender


class BlockGeneration(models.Model):
    """One row, bumped in the same transaction as every change of a block: the policy service
    reads it every POLICY_REFRESH_SECONDS and reloads the blocks when it moved."""

    changes = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"block generation {self.changes}"


class AliasDailyCount(models.Model):
    """Mails to one alias on one day (UTC): accepted and refused at RCPT."""

    alias = models.ForeignKey(Alias, on_delete=models.CASCADE, related_name="daily_counts")
    day = models.DateField()
    accepted = models.BigIntegerField(default=0)
    refused = models.BigIntegerField(default=0)
    last_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["alias", "day"], name="alias_daily_count_unique")]
        indexes = [models.Index(fields=["day"])]

    def __str__(self) -> str:
        return f"{self.alias_id} {self.day}: {self.accepted}+{self.refused}"


class AliasTotal(models.Model):
    """Mails to one alias since counting began: kept however old (two numbers per alias)."""

    alias = models.OneToOneField(Alias, on_delete=models.CASCADE, related_name="activity_total")
    accepted = models.BigIntegerField(default=0)
    refused = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.alias_id}: {self.accepted}+{self.refused}"


class AliasSenderDomain(models.Model):
    """A sender domain that wrote to an alias recently. Only the latest sender address is kept
    (what "Block this sender" needs); rows unseen for ACTIVITY_RETENTION_DAYS are deleted."""

    alias = models.ForeignKey(Alias, on_delete=models.CASCADE, related_name="sender_domains")
    domain = models.CharField(max_length=253)
    last_sender = models.CharField(max_length=320, blank=True)
    accepted = models.BigIntegerField(default=0)
    refused = models.BigIntegerField(default=0)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["alias", "domain"], name="alias_sender_domain_unique")]
        ordering = ["-last_at", "domain"]

    def __str__(self) -> str:
        return f"{self.domain} -> {self.alias_id}"


class LeakFlag(models.Model):
    """The first mail to a per-site alias from a domain unrelated to its site: possibly leaked."""

    alias = models.ForeignKey(Alias, on_delete=models.CASCADE, related_name="leak_flags")
    registrable_domain = models.CharField(max_length=253)  # e.g. unrelated-shop.example
    sender_domain = models.CharField(max_length=253)  # e.g. mailer.unrelated-shop.example
    flagged_at = models.DateTimeField()
    dismissed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["alias", "registrable_domain"], name="leak_flag_unique")]
        ordering = ["-flagged_at", "-id"]

    def __str__(self) -> str:
        return f"{self.alias_id} possibly leaked to {self.registrable_domain}"
