"""``GET /api/v1/hosts/`` (SPEC 5, 3.13): the hosts workers announced, online or not."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import generics, serializers

from portal import clock

from ..hosts import Host
from ..selectors import hosts_for_user


class HostSerializer(serializers.ModelSerializer[Host]):
    online = serializers.SerializerMethodField()
    queue = serializers.CharField(read_only=True)
    jobs_running = serializers.IntegerField(read_only=True)
    items = serializers.IntegerField(read_only=True, help_text="Protected items read on it.")

    class Meta:
        model = Host
        fields = [
            "name",
            "last_seen",
            "online",
            "version",
            "queue",
            "queues",
            "started_at",
            "first_seen",
            "jobs_running",
            "items",
        ]
        read_only_fields = fields

    def get_online(self, host: Host) -> bool:
        now = self.context.setdefault("now", clock.now())
        return host.is_online(now)


class HostList(generics.ListAPIView[Host]):
    """Hosts, by name; ``online`` is a beat within the last 5 minutes."""

    serializer_class = HostSerializer

    def get_queryset(self) -> QuerySet[Host]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Host.objects.none()
        return hosts_for_user(self.request.user)

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "now": clock.now()}
