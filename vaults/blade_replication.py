"""The Replication blade's form and context (SPEC 3.10), apart from ``vaults/blades.py`` so
the blade's views and the blade registry can both import them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms

from portal.http import HtmxHttpRequest

from . import replicas
from .jobs.replication import rpo_of, uncopied_points
from .models import Job, Vault


class ReplicaForm(forms.Form):
    replica = forms.ModelChoiceField(
        label="Replica vault",
        queryset=Vault.objects.none(),
        to_field_name="name",
        empty_label=None,
        error_messages={"invalid_choice": "Choose one of the vaults offered."},
    )

    def __init__(self, *args: Any, vault: Vault, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["replica"]
        assert isinstance(field, forms.ModelChoiceField)
        # Offered: other vaults of the same kind in another region, in no pairing. The
        # service judges the choice again (a forged POST may name any vault).
        field.queryset = (
            Vault.objects.filter(kind=vault.kind, replica__isnull=True, replica_source__isnull=True)
            .exclude(pk=vault.pk)
            .exclude(region=vault.region)
            .order_by("name")
        )
        field.label_from_instance = lambda v: (  # type: ignore[method-assign,assignment]
            f"{v.name} ({v.region}, immutability {v.get_immutability_display().lower()})"
        )


def replication_context(request: HtmxHttpRequest, vault: Vault, now: datetime) -> dict[str, Any]:
    """The blade's own context (``vaults.blades``): pairing, lag, copies in flight."""
    state = replicas.replica_state(vault, now)
    context: dict[str, Any] = {
        "replica_state": state,
        "replica_of": vault.replica_of,
        "replica_form": ReplicaForm(vault=vault),
        "copies_in_flight": list(replicas.copies_in_flight(vault)[:20]),
        "copy_failures": list(
            Job.objects.filter(vault=vault, kind=Job.Kind.COPY, status=Job.Status.FAILED)
            .select_related("recovery_point")
            .order_by("-ended_at")[:5]
        ),
    }
    if state is not None:
        oldest = uncopied_points(vault, now).select_related("item__policy").order_by("created_at")
        first = oldest.first()
        context["uncopied_count"] = oldest.count()
        context["lag_rpo"] = rpo_of(first) if first is not None else None
        context["lag_past_rpo"] = (
            first is not None and state["lag_seconds"] > rpo_of(first).total_seconds()
        )
    return context
