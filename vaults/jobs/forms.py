"""Forms of the jobs pages: an on-demand backup and a restore."""

from __future__ import annotations

from django import forms


class BackupForm(forms.Form):
    retain_until = forms.DateTimeField(
        required=False,
        label="Retain until (UTC)",
        help_text="Leave empty to keep the point as the policy says. Format: 2027-01-31 23:00.",
    )


class RestoreForm(forms.Form):
    target_path = forms.CharField(
        label="Target directory", help_text="An absolute path under a configured restore root."
    )
    sub_path = forms.CharField(
        required=False, label="Only this file or folder", help_text="Relative to the backup."
    )
    overwrite = forms.BooleanField(required=False, label="Overwrite existing files")
