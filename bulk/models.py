from django.conf import settings
from django.db import models


class ImportJob(models.Model):
    """One CSV import as an admin uploaded it: a dry run, or the import itself (made from a dry
    run). The worker runs it row by row; each row's outcome is an ImportRow."""

    class Kind(models.TextChoices):
        USERS = "users", "users"
        ALIASES = "aliases", "aliases"

    class State(models.TextChoices):
        QUEUED = "queued", "waiting for the worker"
        RUNNING = "running", "running"
        DONE = "done", "finished"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    dry_run = models.BooleanField(default=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # The dry run this import was made from.
    source = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="imports")
    filename = models.CharField(max_length=255, blank=True)
    # The file's text, sealed (it may hold password-equivalent hashes); emptied once imported.
    sealed_content = models.TextField(blank=True)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    # The worker holding the job renews this; a stale one lets another worker take it over.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    passwords_handed_over_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{'dry run' if self.dry_run else 'import'} {self.pk} of {self.kind}"


class ImportRow(models.Model):
    """The outcome of one line of an import's file."""

    class Outcome(models.TextChoices):
        # Only users: the initial password is chosen, the directory entry may not exist yet.
        PENDING = "pending", "being created"
        CREATED = "created", "created"
        VALID = "valid", "would be created"
        UNCHANGED = "unchanged", "already there"
        ERROR = "error", "error"

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="rows")
    line = models.PositiveIntegerField()
    key = models.CharField(max_length=320, blank=True, help_text="the uid or address of the row")
    outcome = models.CharField(max_length=9, choices=Outcome.choices)
    message = models.TextField(blank=True)
    # A generated initial password, sealed, until it is handed over once.
    sealed_password = models.TextField(blank=True)

    class Meta:
        ordering = ["line"]
        constraints = [models.UniqueConstraint(fields=["job", "line"], name="import_row_line_unique")]

    def __str__(self) -> str:
        return f"line {self.line}: {self.outcome}"
