"""API plumbing (error shape, token) and the approvals and audit endpoints (SPEC 5)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from . import clock, services
from .filters import ApprovalFilter, AuditFilter
from .gate import DomainError
from .middleware import DATABASE_ERRORS, database_unavailable_body, request_too_large_body
from .models import Approval, AuditRecord
from .parsers import PARSER_CLASSES
from .roles import has_capability
from .throttle import LOCKED_CODE, lockout_sentence

ERROR_SCHEMA = inline_serializer(
    "Error", {"code": serializers.CharField(), "detail": serializers.CharField()}
)


def _first_message(detail: Any) -> tuple[str, str | None]:
    """The first error as ``field: message``, so a client can show one clear sentence."""
    message, field = _first_error(detail)
    return (f"{field}: {message}" if field else message), field


def _first_error(detail: Any) -> tuple[str, str | None]:
    """The first error's own message and the dotted name of its field (None for the whole
    request); nested serializers and dict fields give ``source.path``, ``tags.env``."""
    if isinstance(detail, dict) and detail:
        field, value = next(iter(detail.items()))
        message, inner = _first_error(value)
        if field == "non_field_errors":
            return message, inner
        return message, f"{field}.{inner}" if inner else str(field)
    if isinstance(detail, list) and detail:
        return _first_error(detail[0])
    return str(detail), None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every error is ``{"code", "detail"}`` with the stable codes of SPEC section 4."""
    if isinstance(exc, DATABASE_ERRORS):  # the database is down or restarting
        return Response(database_unavailable_body(), status=status.HTTP_503_SERVICE_UNAVAILABLE)
    if isinstance(exc, DomainError):
        body: dict[str, Any] = {"code": exc.code, "detail": exc.detail}
        if exc.field:
            body["field"] = exc.field
        return Response(body, status=exc.http_status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, RequestDataTooBig):  # a body the middleware could not size up front
        return Response(request_too_large_body(), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, SuspiciousOperation):  # too many form fields or files, a bad boundary
        return Response(
            {"code": "validation_error", "detail": f"The request was refused: {exc}"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail, field = _first_message(exc.detail)
        response.data = {"code": "validation_error", "detail": detail, "errors": exc.detail}
        if field:
            response.data["field"] = field
    elif isinstance(exc, exceptions.APIException):
        codes = {
            exceptions.PermissionDenied: "permission_denied",
            exceptions.NotFound: "not_found",
            exceptions.NotAuthenticated: "not_authenticated",
            exceptions.AuthenticationFailed: "not_authenticated",
        }
        code = codes.get(type(exc), exc.default_code)
        response.data = {"code": code, "detail": str(exc.detail)}
    return response


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 404 (``handler404``): ``{code, detail}`` for an API address no route matches
    (``/api/v1/approvals/0.5/approve/``), the site's page elsewhere."""
    if request.path_info.startswith("/api/"):
        return JsonResponse(
            {"code": "not_found", "detail": "Nothing at this address: check the path."},
            status=status.HTTP_404_NOT_FOUND,
        )
    return defaults.page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 (``handler400``, a malformed request refused before any view ran)."""
    if request.path_info.startswith("/api/"):
        return JsonResponse(
            {"code": "validation_error", "detail": "This request is malformed and was refused."},
            status=status.HTTP_400_BAD_REQUEST,
        )
    return defaults.bad_request(request, exception)


class TokenView(ObtainAuthToken):
    """``POST {username, password}`` answers ``{token}``."""

    # ObtainAuthToken lists its own parsers; ours refuse deep JSON and NUL characters.
    parser_classes = PARSER_CLASSES

    @extend_schema(
        request=inline_serializer(
            "TokenRequest",
            {"username": serializers.CharField(), "password": serializers.CharField()},
        ),
        responses={
            200: inline_serializer("Token", {"token": serializers.CharField()}),
            400: ERROR_SCHEMA,
            429: ERROR_SCHEMA,
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return super().post(request, *args, **kwargs)
        except exceptions.ValidationError:
            # django-axes flags the request object ``authenticate`` saw, which here is DRF's
            # wrapper, so its middleware never sees the lockout: answer it here.
            if getattr(request, "axes_locked_out", False):
                return Response(
                    {"code": LOCKED_CODE, "detail": lockout_sentence()},
                    status=status.HTTP_429_TOO_MANY_REQUESTS,
                )
            raise


class ApprovalSerializer(serializers.ModelSerializer[Approval]):
    status = serializers.SerializerMethodField()
    requested_by = serializers.CharField(source="requested_by.username", read_only=True)
    decided_by = serializers.CharField(
        source="decided_by.username", read_only=True, default=None, allow_null=True
    )
    vault = serializers.CharField(
        source="vault.name", read_only=True, default=None, allow_null=True
    )
    guard = serializers.CharField(
        source="guard.name", read_only=True, default=None, allow_null=True
    )

    class Meta:
        model = Approval
        fields = [
            "id",
            "kind",
            "status",
            "requested_by",
            "decided_by",
            "vault",
            "guard",
            "justification",
            "duration_minutes",
            "created_at",
            "expires_at",
            "decided_at",
            "active_until",
            "reason",
        ]

    def get_status(self, approval: Approval) -> str:
        return approval.effective_status(clock.now())


class DecisionSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)
    otp = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=16,
        help_text="A fresh code from your authenticator app: needed to approve or deny when "
        "HOLDFAST_APPROVER_2FA is required.",
    )


class ApprovalViewSet(viewsets.ReadOnlyModelViewSet[Approval]):
    """Lock approvals and elevation requests, in one inbox."""

    serializer_class = ApprovalSerializer
    filterset_class = ApprovalFilter
    queryset = Approval.objects.select_related("requested_by", "decided_by", "vault", "guard")

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if not has_capability(self.request.user, "view"):
            raise DomainError("permission_denied", "Your role does not allow you to see this.")
        return super().get_queryset()

    def _decide(self, request: Request, action_name: str) -> Response:
        approval = self.get_object()
        serializer = DecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        kwargs: dict[str, Any] = {}
        if action_name in {"deny", "revoke"}:
            kwargs["reason"] = serializer.validated_data.get("reason", "")
        if action_name in {"approve", "deny"}:
            kwargs["otp"] = serializer.validated_data.get("otp", "")
        service = getattr(services, f"approval_{action_name}")
        approval = service(actor=request.user, approval=approval, **kwargs)
        return Response(ApprovalSerializer(approval).data)

    @extend_schema(
        request=DecisionSerializer, responses={200: ApprovalSerializer, 409: ERROR_SCHEMA}
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, "approve")

    @extend_schema(
        request=DecisionSerializer, responses={200: ApprovalSerializer, 409: ERROR_SCHEMA}
    )
    @action(detail=True, methods=["post"])
    def deny(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, "deny")

    @extend_schema(request=None, responses={200: ApprovalSerializer, 409: ERROR_SCHEMA})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, "cancel")

    @extend_schema(
        request=DecisionSerializer, responses={200: ApprovalSerializer, 409: ERROR_SCHEMA}
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, "revoke")


class AuditSerializer(serializers.ModelSerializer[AuditRecord]):
    actor = serializers.CharField(source="actor_name")
    vault = serializers.CharField(source="vault_name")

    class Meta:
        model = AuditRecord
        fields = [
            "id",
            "at",
            "actor",
            "operation",
            "outcome",
            "code",
            "reason",
            "vault",
            "target",
            "source",
            "before",
            "after",
            "details",
        ]


class AuditViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = AuditSerializer
    filterset_class = AuditFilter
    queryset = AuditRecord.objects.all()

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if not has_capability(self.request.user, "view"):
            raise DomainError("permission_denied", "Your role does not allow you to see this.")
        return super().get_queryset()


ACCEPTED = status.HTTP_202_ACCEPTED
__all__ = ["ACCEPTED", "ERROR_SCHEMA", "OpenApiResponse"]
