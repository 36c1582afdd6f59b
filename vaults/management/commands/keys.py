"""``manage.py keys rotate|check|encrypt-vault NAME``: the master key and the vaults' data
keys (SPEC 3.11). The work is `vaults.services.keys` and `vaults.services.encrypt`; this
prints their results and turns their refusals into a sentence and a non-zero exit."""

from __future__ import annotations

from argparse import RawDescriptionHelpFormatter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.gate import DomainError, entry_point
from vaults.services.encrypt import EncryptResult, vault_encrypt
from vaults.services.keys import RotateResult, keys_check, master_key_rotate
from vaults.storage.errors import StorageError

HELP = """Manage encryption keys (SPEC 3.11; docs/storage.md, "Encryption").

rotate: make a new master key (HOLDFAST_KEY_FILE.next, mode 0600), wrap every vault's data key
  and every audit-anchor store's key under it (in the database and as keys/data-key-<new
  id>.json beside the data, locked as long as the old copy), then move it into place. No
  data object is rewritten. The old key file is kept as HOLDFAST_KEY_FILE.retired-<old id>:
  destroy it once the new key file has backups. A rotation interrupted anywhere is finished
  by running rotate again (it continues with the .next file). Audited: master_key_rotate.

check: for every vault, its data key unwraps, the copy beside its data opens with the master
  key alone, and one point's manifest and first chunk decrypt; also warns when the key file
  is not mode 0600. Reads only; exits non-zero if any vault fails.

encrypt-vault NAME: seal in place the objects a vault wrote before encryption (chunks
  re-keyed, manifests rewritten, archive packs re-sealed, hold notes sealed), then delete the
  plaintext no manifest needs; objects still under an S3 Object Lock are left and listed
  with their date. Resumable and safe to run again; run it while no backup or verification
  of the vault is running. Audited: vault_encrypt."""


class Command(BaseCommand):
    help = HELP

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # The help's sections keep their line breaks.
        kwargs["formatter_class"] = RawDescriptionHelpFormatter
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("rotate", help="Rotate the master key (rewraps data keys only).")
        actions.add_parser("check", help="Prove every vault's keys and one point per vault.")
        encrypt = actions.add_parser("encrypt-vault", help="Seal a vault's older plaintext.")
        encrypt.add_argument("name", help="The vault's name.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with entry_point("command"):
                if options["action"] == "rotate":
                    self._rotated(master_key_rotate())
                elif options["action"] == "check":
                    self._check()
                else:
                    self._encrypted(vault_encrypt(name=options["name"]))
        except DomainError as exc:
            raise CommandError(exc.detail) from None
        except (StorageError, OSError) as exc:
            raise CommandError(str(exc)) from None

    def _rotated(self, result: RotateResult) -> None:
        verb = "Finished the interrupted rotation" if result.resumed else "Rotated the master key"
        self.stdout.write(f"{verb}: {result.old_id} -> {result.new_id}.")
        self.stdout.write(f"  vault data keys rewrapped: {result.rewrapped}")
        self.stdout.write(f"  already wrapped by the new key: {result.already}")
        self.stdout.write(f"  key copies written beside vault data: {result.stored_copies}")
        self.stdout.write(f"  audit-anchor store keys rewrapped: {result.anchor_keys}")
        self.stdout.write(
            f"The old master key is kept in {result.retired}: destroy it (e.g. shred -u) once "
            "the new key file has backups kept apart from the data; until then it still "
            "opens every copy written before this rotation."
        )

    def _check(self) -> None:
        result = keys_check()
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        self.stdout.write(f"Master key {result.master_key_id}.")
        for check in result.vaults:
            self.stdout.write(f"{check.vault}: {'OK' if check.ok else 'FAILED'}: {check.message}")
        if result.failed:
            raise CommandError(
                f"{len(result.failed)} of {len(result.vaults)} vault(s) failed the key check."
            )
        self.stdout.write(f"All {len(result.vaults)} vault(s) passed.")

    def _encrypted(self, result: EncryptResult) -> None:
        self.stdout.write(f"Vault {result.vault}:")
        for label, value in (
            ("points rewritten sealed", result.points),
            ("chunks sealed under keyed ids", result.chunks),
            ("archive packs sealed", result.packs),
            ("notes sealed", result.notes),
            ("point digests recorded", result.digests),
            ("chunks no manifest names deleted", result.deleted),
        ):
            self.stdout.write(f"  {label}: {value}")
        for reason in result.skipped:
            self.stdout.write(f"  not converted: {reason}")
        for key, until in result.locked:
            self.stdout.write(f"  plaintext kept under its object lock until {until}: {key}")
        for key, until in result.versions:
            self.stdout.write(
                f"  earlier plaintext version kept by the bucket (locked until {until}; a "
                f"lifecycle rule for noncurrent versions removes it after): {key}"
            )
        for key in result.remaining:
            self.stdout.write(f"  plaintext still there: {key}")
        if result.skipped:
            raise CommandError(
                f"{len(result.skipped)} point(s) of vault {result.vault} were not converted "
                "(named above): verify them, then run encrypt-vault again."
            )
        if result.encrypted:
            self.stdout.write("Every object of the vault is encrypted now.")
        else:
            self.stdout.write(
                "Plaintext remains (listed above): run encrypt-vault again once the locks end "
                "or the points named are repaired."
            )
