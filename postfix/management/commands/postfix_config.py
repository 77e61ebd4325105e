from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from postfix import config


class Command(BaseCommand):
    help = "Print the main.cf / master.cf lines and ldap: table files that match the current settings."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--part", choices=("main.cf", "master.cf", "files", "all"), default="all")

    def handle(self, *args: Any, **options: Any) -> None:
        ctx = config.context()
        part = options["part"]
        if part in ("main.cf", "all"):
            self.stdout.write("##### main.cf")
            self.stdout.write("\n".join(config.main_cf(ctx)) + "\n")
        if part in ("master.cf", "all"):
            self.stdout.write("##### master.cf")
            self.stdout.write("\n".join(config.master_cf(ctx)) + "\n")
        if part in ("files", "all"):
            self.stdout.write("##### files")
            for name, lines in config.cf_files(ctx).items():
                self.stdout.write(f"# {ctx.config_dir / name} (mode 0640 root:postfix: it holds a password)")
                self.stdout.write("\n".join(lines) + "\n")
