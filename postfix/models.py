"""The publication request (an outbox, written with every change the tables are made from)
and what each mail host has published. The first two tables were created by aliases/."""

from django.db import models


class MapGeneration(models.Model):
    """One row: bumped in the same transaction as every change the tables are made from, so
    the need to publish survives a broker or worker that is down."""

    requested = models.BigIntegerField(default=0)
    requested_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=200, blank=True)
    # The digest of the directory's uid -> mailbox addresses at the last directory sync.
    directory_fingerprint = models.CharField(max_length=64, blank=True)

    class Meta:
        db_table = "aliases_mapgeneration"

    def __str__(self) -> str:
        return f"generation {self.requested}"


class PublicationRequest(models.Model):
    """One change: the generation it bumped to and the table keys it touched. A worker that has
    every request since its last publication, each naming its keys, updates only those keys;
    a request naming none (a domain, a catch-all, the directory) has every table re-rendered."""

    generation = models.BigIntegerField(unique=True)
    keys = models.TextField(blank=True)  # newline-separated; empty with everything=True
    everything = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"request {self.generation}"


class MapPublication(models.Model):
    """What one mail host has published (each host's worker publishes its own map directory)."""

    host = models.CharField(max_length=253, unique=True)
    published_generation = models.BigIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    publications = models.BigIntegerField(default=0)  # publications that changed at least one table
    line_counts = models.JSONField(default=dict)  # table name -> entries in the live table
    last_reload_at = models.DateTimeField(null=True, blank=True)
    reload_pending = models.BooleanField(default=False)

    class Meta:
        db_table = "aliases_mappublication"
        ordering = ["host"]

    def __str__(self) -> str:
        return self.host
