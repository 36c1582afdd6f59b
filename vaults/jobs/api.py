"""Jobs API (SPEC 5): start a backup or a restore (202 with the job), list and read jobs.

Routed by ``vaults/jobs/api_urls.py``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal import clock

from ..hosts import job_waits
from ..models import Job, ProtectedItem, RecoveryPoint
from ..selectors import get_vault_for_user, jobs_for_user
from . import requests
from .filters import JobFilter


class JobSerializer(serializers.ModelSerializer[Job]):
    vault = serializers.CharField(source="vault.name", read_only=True, allow_null=True)
    item = serializers.CharField(source="item.name", read_only=True, allow_null=True)
    requested_by = serializers.CharField(
        source="requested_by.username", read_only=True, allow_null=True
    )
    duration_seconds = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    waiting_for_host = serializers.CharField(
        read_only=True,
        help_text='A queued job whose host is offline: "waiting for host fs01 (offline since '
        '...)"; else empty.',
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "bytes_done",
            "bytes_total",
            "created_at",
            "started_at",
            "ended_at",
            "duration_seconds",
            "error",
            "vault",
            "item",
            "recovery_point",
            "requested_by",
            "slot",
            "worker",
            "files_done",
            "files_total",
            "cancel_requested_at",
            "host",
            "waiting_for_host",
        ]
        read_only_fields = fields

    def get_error(self, job: Job) -> str:
        """The job's error; for a queued job waiting for its offline host, that sentence."""
        return job.error or job.waiting_for_host

    def get_duration_seconds(self, job: Job) -> float | None:
        duration = job.duration
        return None if duration is None else duration.total_seconds()


class BackupRequestSerializer(serializers.Serializer[Any]):
    retain_until = serializers.DateTimeField(required=False, allow_null=True)


class RestoreRequestSerializer(serializers.Serializer[Any]):
    target_path = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="A directory point's target."
    )
    target_database = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=1000,
        help_text="A postgres point's target: a new database, created by the restore.",
    )
    sub_path = serializers.CharField(required=False, allow_blank=True, default="")
    overwrite = serializers.BooleanField(required=False, default=False)
    # Several files and folders of the point, restored into the same target.
    sub_paths = serializers.ListField(
        child=serializers.CharField(), required=False, allow_empty=True, max_length=1000
    )
    target_host = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=100,
        help_text="The host whose worker writes the files; default the item's host.",
    )


class RehydrateRequestSerializer(serializers.Serializer[Any]):
    days = serializers.IntegerField(required=False, default=requests.REHYDRATE_DEFAULT_DAYS)
    priority = serializers.ChoiceField(
        choices=[("standard", "standard"), ("high", "high")], required=False, default="standard"
    )


def _item(request: Request, name: str, item: str) -> ProtectedItem:
    vault = get_vault_for_user(request.user, name)
    return get_object_or_404(
        ProtectedItem.objects.select_related("vault", "policy"), vault=vault, name=item
    )


# The broker was down: the job is recorded and queued, and starts once the queue is back.
QUEUE_UNAVAILABLE = OpenApiResponse(
    inline_serializer(
        "QueueUnavailable",
        {
            "code": serializers.CharField(),
            "detail": serializers.CharField(),
            "job": JobSerializer(),
        },
    ),
    description="The job queue is unreachable: the job is recorded, queued and sent once it "
    "is back; do not submit it again.",
)


def _accepted(job: Job) -> Response:
    job_waits([job], clock.now())
    if requests.job_waiting_for_queue(job):
        return Response(
            {"code": "queue_unavailable", "detail": job.error, "job": JobSerializer(job).data},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class BackupView(APIView):
    @extend_schema(
        request=BackupRequestSerializer, responses={202: JobSerializer, 503: QUEUE_UNAVAILABLE}
    )
    def post(self, request: Request, name: str, item: str) -> Response:
        protected = _item(request, name, item)
        body = BackupRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        job = requests.backup_request(
            actor=request.user, item=protected, retain_until=body.validated_data.get("retain_until")
        )
        return _accepted(job)


class RestoreView(APIView):
    @extend_schema(
        request=RestoreRequestSerializer, responses={202: JobSerializer, 503: QUEUE_UNAVAILABLE}
    )
    def post(self, request: Request, name: str, item: str, pk: int) -> Response:
        protected = _item(request, name, item)
        point = get_object_or_404(
            RecoveryPoint.objects.select_related("vault", "item"), item=protected, pk=pk
        )
        body = RestoreRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        job = requests.restore_request(actor=request.user, point=point, **body.validated_data)
        return _accepted(job)


def _point(request: Request, name: str, item: str, pk: int) -> RecoveryPoint:
    protected = _item(request, name, item)
    return get_object_or_404(
        RecoveryPoint.objects.select_related("vault", "item"), item=protected, pk=pk
    )


class VerifyView(APIView):
    @extend_schema(request=None, responses={202: JobSerializer, 503: QUEUE_UNAVAILABLE})
    def post(self, request: Request, name: str, item: str, pk: int) -> Response:
        """Re-read and re-hash the point's data (SPEC 3.8 verification job)."""
        return _accepted(
            requests.verify_request(actor=request.user, point=_point(request, name, item, pk))
        )


class DrillView(APIView):
    @extend_schema(request=None, responses={202: JobSerializer, 503: QUEUE_UNAVAILABLE})
    def post(self, request: Request, name: str, item: str, pk: int) -> Response:
        """Restore the point into a scratch directory, re-hash every file against its
        manifest, record the outcome as the point's ``drill`` and remove the copy (SPEC
        3.12). An archived point answers 409 ``point_archived`` until it is rehydrated; a
        point past its expiry answers 400 ``validation_error``."""
        return _accepted(
            requests.drill_request(actor=request.user, point=_point(request, name, item, pk))
        )


class RehydrateView(APIView):
    @extend_schema(
        request=RehydrateRequestSerializer, responses={202: JobSerializer, 503: QUEUE_UNAVAILABLE}
    )
    def post(self, request: Request, name: str, item: str, pk: int) -> Response:
        """Bring an archived point back to the standard tier for 10 to 30 days (SPEC 3.7)."""
        point = _point(request, name, item, pk)
        body = RehydrateRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return _accepted(
            requests.rehydrate_request(actor=request.user, point=point, **body.validated_data)
        )


class LockVerifyView(APIView):
    @extend_schema(request=None, responses={202: JobSerializer, 503: QUEUE_UNAVAILABLE})
    def post(self, request: Request, name: str) -> Response:
        """Read back every S3 object lock of the vault's points and record, per point, the
        date until which the storage confirms it; a missing or short lock raises a
        security alert. A vault on local disk answers 400 ``validation_error``."""
        vault = get_vault_for_user(request.user, name)
        return _accepted(requests.lock_verify_request(actor=request.user, vault=vault))


class JobCancelView(APIView):
    @extend_schema(request=None, responses={200: JobSerializer, 202: JobSerializer})
    def post(self, request: Request, pk: int) -> Response:
        """Cancel a queued job (200, it has ended) or a running one (202, it stops at its next
        file boundary and keeps nothing half-done; its status becomes ``failed`` with the
        canceller named in ``error``). An ended job answers 409 ``job_ended``."""
        job = get_object_or_404(jobs_for_user(request.user), pk=pk)
        job = requests.job_cancel(actor=request.user, job=job)
        code = status.HTTP_200_OK if job.is_finished else status.HTTP_202_ACCEPTED
        return Response(JobSerializer(job).data, status=code)


class JobList(generics.ListAPIView[Job]):
    serializer_class = JobSerializer
    filterset_class = JobFilter

    def get_queryset(self) -> QuerySet[Job]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Job.objects.none()
        return jobs_for_user(self.request.user).select_related("vault", "item", "requested_by")

    def paginate_queryset(self, queryset: Any) -> Any:
        page = super().paginate_queryset(queryset)
        if page is not None:
            job_waits(list(page), clock.now())
        return page


class JobDetail(generics.RetrieveAPIView[Job]):
    serializer_class = JobSerializer

    def get_queryset(self) -> QuerySet[Job]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Job.objects.none()
        return jobs_for_user(self.request.user).select_related("vault", "item", "requested_by")

    def get_object(self) -> Job:
        job = super().get_object()
        job_waits([job], clock.now())
        return job
