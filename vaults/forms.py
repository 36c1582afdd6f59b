"""Forms of the vault pages: creating a vault, the security blades' controls, and the Backup
items blade (protect, move to another policy, stop protection, retain a point)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from guards.models import ResourceGuard
from policies.models import Policy
from portal import clock
from portal.gate import DomainError

from .models import Host, ProtectedItem, Vault


def parse_tags(text: str) -> dict[str, str]:
    """``env=prod, team=storage`` to a dict; a bare word becomes a tag with an empty value."""
    tags: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition("=")
        if not key.strip():
            raise forms.ValidationError("Write tags as key=value, separated by commas.")
        tags[key.strip()] = value.strip()
    return tags


OTHER_REGION = ("other", "Other…")


class VaultCreateForm(forms.Form):
    name = forms.CharField(max_length=50, help_text="2-50 letters, digits or hyphens.")
    kind = forms.ChoiceField(choices=Vault.Kind.choices)
    # A CharField shown as a list (settings.HOLDFAST_REGIONS): the API and older forms may
    # still post any label; "other" takes the text of ``region_other``.
    region = forms.CharField(max_length=40, widget=forms.Select)
    region_other = forms.CharField(
        required=False,
        max_length=40,
        label="Other region",
        help_text="When the region is not in the list: choose Other above and type it here.",
    )
    tags = forms.CharField(required=False, help_text="key=value pairs, separated by commas.")
    storage_location = forms.CharField(
        required=False,
        max_length=500,
        help_text="Empty: this server's storage. s3://bucket/prefix: an S3 bucket with "
        "versioning and Object Lock, which then locks every recovery point itself; "
        "s3://name@bucket/prefix: the same on the S3 endpoint configured under that name.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        regions = [(region, region) for region in settings.HOLDFAST_REGIONS]
        widget = self.fields["region"].widget
        assert isinstance(widget, forms.Select)
        widget.choices = [("", "Choose a region"), *regions, OTHER_REGION]

    def clean_tags(self) -> dict[str, str]:
        return parse_tags(self.cleaned_data.get("tags") or "")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        other = (data.pop("region_other", "") or "").strip()
        if data.get("region") == OTHER_REGION[0]:
            if not other:
                self.add_error("region_other", "Type the region, or choose one from the list.")
            data["region"] = other
        return data


class ImmutabilityForm(forms.Form):
    state = forms.ChoiceField(
        choices=[(Vault.Immutability.ENABLED, "Enabled"), (Vault.Immutability.DISABLED, "Disabled")]
    )


class ConfirmNameForm(forms.Form):
    confirmation = forms.CharField(
        label="Type the vault's name to confirm", max_length=50, required=True
    )


class SoftDeleteForm(forms.Form):
    """The Security settings blade's soft-delete controls; each of its forms posts only the
    fields of its own action (retention, enable, or disable with the purge count)."""

    state = forms.ChoiceField(
        choices=[(Vault.SoftDelete.ENABLED, "Enabled"), (Vault.SoftDelete.DISABLED, "Disabled")],
        required=False,
    )
    retention_days = forms.IntegerField(
        label="Retention (days)",
        min_value=14,
        max_value=180,
        required=False,
        error_messages={
            "min_value": "Soft delete keeps items 14 to 180 days.",
            "max_value": "Soft delete keeps items 14 to 180 days.",
            "invalid": "Give the retention as a whole number of days, 14 to 180.",
        },
    )
    confirm_purge_count = forms.IntegerField(
        label="Number of soft-deleted items that will be purged",
        min_value=0,
        required=False,
        error_messages={"invalid": "Type the number of items that will be purged."},
    )

    def clean_state(self) -> str | None:
        return self.cleaned_data.get("state") or None


class GuardChoiceForm(forms.Form):
    guard = forms.ModelChoiceField(
        queryset=ResourceGuard.objects.order_by("name"),
        to_field_name="name",
        label="Resource Guard",
        error_messages={"invalid_choice": "Choose an existing Resource Guard."},
    )

    def __init__(self, *args: Any, current: ResourceGuard | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if current is not None:
            # Only another guard can replace the one in place.
            field = self.fields["guard"]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = ResourceGuard.objects.exclude(pk=current.pk).order_by("name")


def form_refusal(form: forms.Form) -> DomainError:
    """A form's first error as the refusal a blade shows (``validation_error``)."""
    field, errors = next(iter(form.errors.items()))
    return DomainError("validation_error", str(errors[0]), field=field)


# --- the Backup items blade -------------------------------------------------------------


SOURCE_KINDS = [
    (ProtectedItem.SourceKind.DIRECTORY, "Directory"),
    (ProtectedItem.SourceKind.POSTGRES, "PostgreSQL database"),
]
HOST_REFUSAL = (
    "No worker has announced a host named %(value)s: start a worker there "
    "(HOLDFAST_WORKER_HOST, docs/hosts.md) or choose a known host."
)


class ProtectForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="How this item is named in the vault.")
    # Optional: a form sent without it protects a directory, as before databases could be.
    source_kind = forms.ChoiceField(label="What to protect", choices=SOURCE_KINDS, required=False)
    source_path = forms.CharField(
        label="Directory path",
        max_length=1000,
        required=False,
        help_text="A directory: an absolute path on the host below, e.g. /srv/data.",
    )
    database = forms.CharField(
        label="Database name",
        max_length=1000,
        required=False,
        help_text="A PostgreSQL database: its name on the server the host's workers reach "
        "with their own libpq settings (docs/workloads.md), e.g. sales.",
    )
    source_host = forms.ChoiceField(
        label="Host",
        required=False,
        help_text="The host whose worker reads the source and checks it when it backs it up; "
        "any host: every worker must be able to read it.",
        error_messages={"invalid_choice": HOST_REFUSAL},
    )
    policy = forms.ModelChoiceField(queryset=Policy.objects.none(), empty_label=None)

    def __init__(self, *args: Any, vault: Vault, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        policy_field: Any = self.fields["policy"]
        policy_field.queryset = vault.policies.all()
        host_choices(self.fields["source_host"])

    def clean(self) -> dict[str, Any]:
        """The service's arguments: a database's name is kept as the item's source path."""
        data = super().clean() or {}
        data["source_kind"] = data.get("source_kind") or ProtectedItem.SourceKind.DIRECTORY
        database = (data.pop("database", "") or "").strip()
        if data.get("source_kind") == ProtectedItem.SourceKind.POSTGRES:
            data["source_path"] = database
        return data


def host_choices(field: Any) -> None:
    """Fill a host field: any host, then every announced host, online or offline."""
    now = clock.now()
    field.choices = [("", "Any host")] + [
        (host.name, f"{host.name} ({'online' if host.is_online(now) else 'offline'})")
        for host in Host.objects.order_by("name")
    ]


class ItemHostForm(forms.Form):
    """Read an item's source on another host (``services.item_host_set``)."""

    host = forms.ChoiceField(
        label="Read on host",
        required=False,
        help_text="Its next jobs run there; jobs already queued keep their host.",
        error_messages={"invalid_choice": HOST_REFUSAL},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        host_choices(self.fields["host"])


class ChangePolicyForm(forms.Form):
    policy = forms.ModelChoiceField(
        label="New policy", queryset=Policy.objects.none(), empty_label=None
    )

    def __init__(self, *args: Any, item: ProtectedItem, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        policy_field: Any = self.fields["policy"]
        policy_field.queryset = item.vault.policies.exclude(pk=item.policy_id)


class StopProtectionForm(forms.Form):
    delete_data = forms.BooleanField(required=False)
    confirmation = forms.CharField(required=False, max_length=100)


class RetainUntilForm(forms.Form):
    retain_until = forms.DateTimeField(
        label="Retain until (UTC)",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
