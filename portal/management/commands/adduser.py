"""``manage.py adduser NAME --role ROLE [--password PW | --password-stdin] [--superuser]``.

The installation's bootstrap (SPEC 3.9): it creates a *new* account, with its role and
superuser status at once, since before the first security admins exist nobody could approve a
grant. It never changes an existing account (a name in use is refused), every use goes through
the gate and is in the audit log (source ``command``), and once a security admin exists (past
the bootstrap) a new security admin or superuser raises the ``account_power_granted`` security
alert: a shell on one host grants no power silently. Raising an existing account's power is a
``user_role_grant`` approval, filed by a superuser on the Users page or in the API and decided
by another security admin.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal import services
from portal.gate import DomainError, entry_point
from portal.roles import ROLES


class Command(BaseCommand):
    help = (
        "Create a new Holdfast user with one role (the bootstrap; audited, and once a security "
        "admin exists, a security alert when it creates a security admin or superuser). "
        "Existing accounts are changed on the Users page or in the API."
    )

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
