from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import directory
from explain import services
from explain.decision import Verdict
from explain.forms import ExplainForm


class Command(BaseCommand):
    help = "What this mail host does now with mail to and from ADDRESS, from the live tables (docs/explain.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("address")

    def handle(self, *args: object, **options: object) -> None:
        form = ExplainForm({"address": options["address"]})
        if not form.is_valid():
            raise CommandError(" ".join(str(error) for error in form.errors["address"]))
        try:
            explanation = services.explain(form.cleaned_data["address"])
        except (services.ExplainError, directory.DirectoryUnavailable) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{explanation.address} on mail host {explanation.host}, as things are now")
        self._verdict("Mail to it", explanation.to)
        self._verdict("Mail from it", explanation.sender)
        if explanation.note:
            self.stdout.write(f"\n{explanation.note}")
            for difference in explanation.differences:
                live, expected = difference.live or "(no line)", difference.expected or "(no line)"
                self.stdout.write(f"  {difference.where} {difference.key}: live {live}; the database says {expected}")

    def _verdict(self, title: str, verdict: Verdict) -> None:
        self.stdout.write(f"\n{title}: {verdict.outcome}")
        for step in verdict.steps:
            mark = "=>" if step.decides else "  "
            line = step.line or "(no line)"
            self.stdout.write(f" {mark} {step.where} [{step.key}] {line}: {step.says.strip()}")
