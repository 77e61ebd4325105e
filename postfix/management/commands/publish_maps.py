import difflib
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from postfix import publication


class Command(BaseCommand):
    help = "Publish this host's Postfix tables now (--dry-run: print the diff against the live tables)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["dry_run"]:
            self._diff()
            return
        outcome = publication.publish(force=True, coalesce=False)
        if outcome.status == "failed":
            raise CommandError(f"publication failed, the previous maps stay in force: {outcome.error}")
        if outcome.status == "busy":
            self.stdout.write("another publication is running on this host; it publishes every pending change")
            return
        changed = ", ".join(outcome.changed) or "none"
        reload = " (postfix reloaded)" if outcome.reloaded else ""
        self.stdout.write(f"published generation {outcome.generation}; changed maps: {changed}{reload}")

    def _diff(self) -> None:
        differences = 0
        for name, lines in publication.render_tables().items():
            live = publication.live_lines(name)
            if live == lines:
                continue
            differences += 1
            diff = difflib.unified_diff(
                [f"{line}\n" for line in live or []],
                [f"{line}\n" for line in lines],
                fromfile=f"{name} (live)" if live is not None else f"{name} (not published)",
                tofile=f"{name} (rendered)",
                n=0,
            )
            self.stdout.write("".join(diff), ending="")
        if not differences:
            self.stdout.write("the live maps are up to date")
