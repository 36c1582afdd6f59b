"""Forms of the jobs pages: an on-demand backup, a restore, a rehydration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings

from ..hosts import Host
from ..storage import RestoreRefused
from ..storage.restore import normalize_sub_path
from .requests import REHYDRATE_DAYS, REHYDRATE_DEFAULT_DAYS


class BackupForm(forms.Form):
    retain_until = forms.DateTimeField(
        required=False,
        label="Retain until (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Leave empty to keep the point as the policy says.",
    )


def restore_roots() -> list[str]:
    """The directories restores may write under (``HOLDFAST_RESTORE_ROOTS``), as listed."""
    return [str(Path(root)) for root in settings.HOLDFAST_RESTORE_ROOTS]


HOST_UNKNOWN = "No worker has announced a host named %(value)s."


def target_hosts(field: Any, item_host: str) -> None:
    """A restore's host choices: the item's host (or any) first, then every other host."""
    default = f"The item's host ({item_host})" if item_host else "Any host"
    names = Host.objects.order_by("name").values_list("name", flat=True)
    field.choices = [("", default), *((name, name) for name in names if name != item_host)]


class RestoreForm(forms.Form):
    """Where to restore: one of the allowed roots and, optionally, a folder inside it. The
    service judges the resulting path again (symlinks followed), and the store once more."""

    root = forms.ChoiceField(label="Restore root")
    folder = forms.CharField(
        required=False,
        label="Folder inside the root",
        help_text="Optional, e.g. 2026-11-30/docs. Created if missing.",
    )
    overwrite = forms.BooleanField(required=False, label="Overwrite existing files")
    target_host = forms.ChoiceField(
        required=False,
        label="Restore on host",
        help_text="The host whose worker writes the files (SPEC 3.13).",
        error_messages={"invalid_choice": HOST_UNKNOWN},
    )

    def __init__(self, *args: Any, item_host: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        root = self.fields["root"]
        assert isinstance(root, forms.ChoiceField)
        root.choices = [(path, path) for path in restore_roots()]
        target_hosts(self.fields["target_host"], item_host)

    def clean_folder(self) -> str:
        folder = self.cleaned_data.get("folder", "").strip()
        try:
            cleaned = normalize_sub_path(folder)
        except RestoreRefused:
            raise forms.ValidationError(
                "Give a folder inside the root (no '..'); leave empty for the root itself."
            ) from None
        if folder.startswith("/"):
            raise forms.ValidationError("Give a folder relative to the root, not an absolute path.")
        return cleaned

    @property
    def target_path(self) -> str:
        root = Path(self.cleaned_data["root"])
        folder = self.cleaned_data.get("folder") or ""
        return str(root / folder) if folder else str(root)


class DatabaseRestoreForm(forms.Form):
    """A database dump's restore: the name of the new database it creates (checked again by
    the service: its form, not Holdfast's own, not one that exists)."""

    target_database = forms.CharField(
        label="New database name",
        max_length=63,
        help_text="Created by the restore on the server the worker reaches; it must not exist.",
    )
    target_host = forms.ChoiceField(
        required=False,
        label="Restore on host",
        help_text="The host whose worker reaches the server and runs pg_restore (SPEC 3.13).",
        error_messages={"invalid_choice": HOST_UNKNOWN},
    )

    def __init__(self, *args: Any, item_host: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        target_hosts(self.fields["target_host"], item_host)


class RehydrateForm(forms.Form):
    days = forms.IntegerField(
        label="Keep the rehydrated copy for (days)",
        min_value=REHYDRATE_DAYS[0],
        max_value=REHYDRATE_DAYS[1],
        initial=REHYDRATE_DEFAULT_DAYS,
    )
    priority = forms.ChoiceField(
        label="Priority",
        choices=[("standard", "Standard"), ("high", "High (expedited, costs more)")],
        initial="standard",
    )
