"""``manage.py adduser NAME --role ROLE [--password PW | --password-stdin] [--superuser]``."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal import services
from portal.gate import DomainError, entry_point
from portal.roles import ROLES


class Command(BaseCommand):
    help = "Create a Holdfast user with one role."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=ROLES)
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--password")
        source.add_argument("--password-stdin", action="store_true")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--superuser",
            action="store_true",
            help="Also make the user an installation administrator.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password = options["password"]
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\n")
        try:
            with entry_point("command"):
                user = services.user_create(
                    actor=None,
                    username=options["username"],
                    role=options["role"],
                    password=password,
                    email=options["email"],
                    is_superuser=options["superuser"],
                )
        except DomainError as error:
            raise CommandError(error.detail) from error
        self.stdout.write(f"Created {user.get_username()} with role {options['role']}.")
