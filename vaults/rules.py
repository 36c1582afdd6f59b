"""Rules of vaults that need no database: how far ahead a retain-until date may lie
(SPEC 3.6), which directories may be backed up and where no restore writes (SPEC 8). The
services and the job requests judge with them; ``policies/rules.py`` holds the schedule and
retention rules of policies."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings

from portal.gate import DomainError

# The longest anything is kept (99 years of yearly points, SPEC 3.6): no date beyond it.
RETAIN_UNTIL_LIMIT = timedelta(days=99 * 366)


def retain_until_check(retain_until: datetime, now: datetime) -> None:
    """A retain-until date lies ahead, and no further than the longest retention a policy
    allows (a date in year 9999 on a locked vault would hold its storage for ever)."""
    if retain_until <= now:
        raise DomainError(
            "validation_error", "retain_until: choose a time in the future.", field="retain_until"
        )
    if retain_until > now + RETAIN_UNTIL_LIMIT:
        raise DomainError(
            "validation_error",
            "retain_until: choose a date at most 99 years ahead, the longest retention a policy "
            "allows.",
            field="retain_until",
        )


def demo_dir() -> Path:
    """Where ``manage.py seed_demo`` writes the directories its demo items protect."""
    return Path(settings.VAR_DIR).resolve() / "demo"


def _in_demo_dir(resolved: Path) -> bool:
    """A directory below ``var/demo/`` (the demo's sample files, nothing of Holdfast's own):
    the one part of ``var/`` that may be protected. ``var/demo`` itself must be a real
    directory: were it a symlink (to ``var/``, say), ``resolved`` (every symlink followed)
    would lie elsewhere and not below the literal path compared here."""
    demo = demo_dir()
    return resolved != demo and resolved.is_relative_to(demo) and not demo.is_symlink()


def source_refusal(resolved: Path) -> str | None:
    """Why the directory at ``resolved`` (a path with every symlink already followed) may not
    be backed up, as a clause ("holds Holdfast's own storage or data"), or None.

    The one rule for sources, judged where an item is protected and again by every backup on
    the directory it actually opened (``VaultStore.backup(check_source=...)``): a source
    swapped for a symlink after protection is judged by where it now leads."""
    # The store, the database and the server's own files are never a backup source (a backup
    # admin could otherwise read them back through a restore); HOLDFAST_SOURCE_ROOTS, when
    # set, narrows sources further.
    forbidden = [Path(settings.HOLDFAST_STORAGE_ROOT).resolve()]
    if not _in_demo_dir(resolved):
        forbidden.append(Path(settings.VAR_DIR).resolve())
    if any(resolved.is_relative_to(root) or root.is_relative_to(resolved) for root in forbidden):
        return "holds Holdfast's own storage or data"
    allowed = [Path(root).resolve() for root in settings.HOLDFAST_SOURCE_ROOTS]
    if allowed and not any(resolved.is_relative_to(root) for root in allowed):
        return (
            "is outside the directories this installation backs up "
            f"({', '.join(str(root) for root in allowed)})"
        )
    return None


def restore_forbidden_roots() -> list[Path]:
    """Where no restore writes, whatever ``HOLDFAST_RESTORE_ROOTS`` allows: the vault storage
    and the audit anchors (a restore root such as ``/data`` holding ``/data/storage`` would
    otherwise let one operator write into a locked vault's store with ``overwrite``)."""
    return [Path(settings.HOLDFAST_STORAGE_ROOT), Path(settings.HOLDFAST_AUDIT_ANCHOR_DIR)]


def backup_source_refusal(source: str, opened: str) -> str | None:
    """The sentence failing a backup whose source ``source`` opened as ``opened``, or None."""
    reason = source_refusal(Path(opened))
    if reason is None:
        return None
    where = f"{source} now leads to {opened}, which" if opened != source else source
    return (
        f"Backup source {where} {reason}: nothing was read. If the directory was replaced "
        "by a symlink, put the real directory back or protect another one."
    )


def own_database(name: str) -> bool:
    """Whether ``name`` is the name of a database Holdfast itself runs on: never a PostgreSQL
    item's source (its dump would hand every reader of the vault Holdfast's wrapped keys and
    password hashes), never a restore's target. Case-insensitive, so no spelling slips by."""
    return name.lower() in {str(db.get("NAME") or "").lower() for db in settings.DATABASES.values()}
