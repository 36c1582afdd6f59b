"""API plumbing (error shape, token) and the approvals and audit endpoints (SPEC 5)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate, get_user_model
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import exceptions, mixins, renderers, serializers, status, viewsets
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from . import clock, services
from .filters import ApprovalFilter, AuditFilter
from .gate import DomainError
from .middleware import DATABASE_ERRORS, database_unavailable_body, request_too_large_body
from .models import Approval, AuditRecord
from .parsers import PARSER_CLASSES
from .roles import ROLES, has_capability, role_of
from .throttle import LOCKED_CODE, lockout_sentence

ERROR_SCHEMA = inline_serializer(
    "Error", {"code": serializers.CharField(), "detail": serializers.CharField()}
)


def api_router() -> DefaultRouter:
    """A router as every app's API URL module uses one (``api_urls.py``): trailing slashes,
    no root view, no format suffixes."""
    router = DefaultRouter(trailing_slash=True)
    router.include_root_view = False
    router.include_format_suffixes = False
    return router


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


class PasswordChangeSerializer(serializers.Serializer[Any]):
    current_password = serializers.CharField(max_length=4096, trim_whitespace=False)
    new_password = serializers.CharField(max_length=4096, trim_whitespace=False)


class PasswordChangeView(APIView):
    """``POST {current_password, new_password}``: the owner sets their own password. Its API
    tokens end (sign in again for a new one); a password someone else chose stops counting
    against the account's approvals (docs/security.md)."""

    parser_classes = PARSER_CLASSES

    @extend_schema(
        request=PasswordChangeSerializer,
        responses={204: None, 400: ERROR_SCHEMA, 401: ERROR_SCHEMA},
    )
    def post(self, request: Request) -> Response:
        data = PasswordChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        password_ok = (
            authenticate(
                request._request,
                username=request.user.get_username(),
                password=data.validated_data["current_password"],
            )
            is not None
        )
        services.password_change(
            actor=request.user,
            new_password=data.validated_data["new_password"],
            password_ok=password_ok,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenView(APIView):
    """``POST {username, password}`` answers ``{token}``: a new key, shown this once (only its
    digest is stored). ``DELETE`` with ``Authorization: Token <key>`` ends that token."""

    throttle_classes = ()
    permission_classes = ()
    renderer_classes = (renderers.JSONRenderer,)

    # Ours refuse deep JSON and NUL characters before anything else reads the body.
    parser_classes = PARSER_CLASSES

    @extend_schema(
        request=inline_serializer(
            "TokenRequest",
            {"username": serializers.CharField(), "password": serializers.CharField()},
        ),
        responses={
            200: inline_serializer(
                "Token",
                {
                    "token": serializers.CharField(),
                    "expires_at": serializers.DateTimeField(allow_null=True),
                },
            ),
            400: ERROR_SCHEMA,
            429: ERROR_SCHEMA,
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        credentials = AuthTokenSerializer(data=request.data, context={"request": request})
        try:
            credentials.is_valid(raise_exception=True)
        except exceptions.ValidationError:
            # django-axes flags the request object ``authenticate`` saw, which here is DRF's
            # wrapper, so its middleware never sees the lockout: answer it here.
            if getattr(request, "axes_locked_out", False):
                return Response(
                    {"code": LOCKED_CODE, "detail": lockout_sentence()},
                    status=status.HTTP_429_TOO_MANY_REQUESTS,
                )
            raise
        issued = services.api_token_issue(actor=credentials.validated_data["user"])
        return Response({"token": issued.key, "expires_at": issued.expires_at})

    @extend_schema(request=None, responses={204: None, 401: ERROR_SCHEMA})
    def delete(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not isinstance(request.auth, AuthToken):
            raise exceptions.NotAuthenticated(
                "Send the token to end as Authorization: Token <key>."
            )
        services.api_token_revoke(actor=request.user, token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


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
    account = serializers.CharField(
        source="account.username",
        read_only=True,
        default=None,
        allow_null=True,
        help_text="For a user_role_grant: the account that would gain the power.",
    )
    grant = serializers.SerializerMethodField(
        help_text="For a user_role_grant: what it gives, {role?, is_superuser?}."
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
            "account",
            "grant",
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

    def get_grant(self, approval: Approval) -> dict[str, Any] | None:
        if approval.kind != Approval.Kind.USER_ROLE_GRANT:
            return None
        return {
            key: approval.payload[key]
            for key in ("role", "is_superuser")
            if key in approval.payload
        }


def otp_field() -> serializers.CharField:
    """The ``otp`` field of every request that files or decides an approval."""
    return serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=16,
        help_text="A fresh code from your authenticator app: needed to file or decide a "
        "request when HOLDFAST_APPROVER_2FA is required (otp_required / otp_invalid).",
    )


class DecisionSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)
    otp = otp_field()
    # Optional: the vault's or guard's name, checked when given (the approval page always
    # sends it for a lock or a guard weakening; an API client may).
    confirmation = serializers.CharField(
        required=False, allow_blank=True, max_length=100, trim_whitespace=False
    )


class ApprovalViewSet(viewsets.ReadOnlyModelViewSet[Approval]):
    """Lock approvals and elevation requests, in one inbox."""

    serializer_class = ApprovalSerializer
    filterset_class = ApprovalFilter
    queryset = Approval.objects.select_related(
        "requested_by", "decided_by", "vault", "guard", "account"
    )

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
        if action_name == "approve" and "confirmation" in serializer.validated_data:
            kwargs["confirmation"] = serializer.validated_data["confirmation"]
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


# --- users (SPEC 3.9, 5) ---------------------------------------------------------------------


class UserSerializer(serializers.Serializer[Any]):
    username = serializers.CharField(read_only=True)
    email = serializers.EmailField(read_only=True)
    role = serializers.SerializerMethodField()
    is_superuser = serializers.BooleanField(read_only=True)
    is_active = serializers.BooleanField(read_only=True)
    date_joined = serializers.DateTimeField(read_only=True)
    last_login = serializers.DateTimeField(read_only=True)
    pending_grants = serializers.SerializerMethodField(
        help_text="Ids of the pending user_role_grant approvals for this account."
    )

    def get_role(self, user: Any) -> str:
        return role_of(user) if role_of(user) in ROLES else ""

    def get_pending_grants(self, user: Any) -> list[int]:
        now = clock.now()
        return [
            grant.pk
            for grant in user.role_grants.all()
            if grant.effective_status(now) == Approval.Status.PENDING
        ]


class UserCreateSerializer(serializers.Serializer[Any]):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)
    role = serializers.ChoiceField(choices=ROLES)
    is_superuser = serializers.BooleanField(default=False)
    email = serializers.EmailField(required=False, allow_blank=True, default="")


class UserUpdateSerializer(serializers.Serializer[Any]):
    password = serializers.CharField(max_length=128, trim_whitespace=False, required=False)
    role = serializers.ChoiceField(choices=ROLES, required=False)
    is_superuser = serializers.BooleanField(required=False)
    is_active = serializers.BooleanField(required=False)


def _account_answer(change: services.AccountChange, created: bool) -> Response:
    """200/201 with the account, or 202 with the pending grant when power was asked for."""
    if change.grant is not None:
        return Response(ApprovalSerializer(change.grant).data, status=status.HTTP_202_ACCEPTED)
    code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return Response(UserSerializer(change.user).data, status=code)


class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Accounts: superusers manage them, security admins read them. A grant of power answers
    202 with a pending ``user_role_grant`` approval; lowering and deactivating are immediate."""

    serializer_class = UserSerializer
    lookup_field = "username"
    lookup_value_regex = "[^/]+"
    queryset = get_user_model().objects.none()  # for the schema; requests use get_queryset()

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if getattr(self, "swagger_fake_view", False):
            return get_user_model().objects.none()
        if not has_capability(self.request.user, "read_accounts"):
            raise DomainError(
                "permission_denied", "Only superusers and security admins can see accounts."
            )
        return (
            get_user_model().objects.prefetch_related("groups", "role_grants").order_by("username")
        )

    @extend_schema(
        request=UserCreateSerializer,
        responses={
            201: UserSerializer,
            202: ApprovalSerializer,
            400: ERROR_SCHEMA,
            403: ERROR_SCHEMA,
        },
    )
    def create(self, request: Request) -> Response:
        data = UserCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        change = services.account_create(actor=request.user, **data.validated_data)
        return _account_answer(change, created=True)

    @extend_schema(
        request=UserUpdateSerializer,
        responses={
            200: UserSerializer,
            202: ApprovalSerializer,
            400: ERROR_SCHEMA,
            403: ERROR_SCHEMA,
        },
    )
    def get_object(self):  # type: ignore[no-untyped-def]
        # PostgreSQL refuses NUL in a query: no account has one in its name.
        if "\x00" in str(self.kwargs.get(self.lookup_field, "")):
            raise Http404
        return super().get_object()

    def partial_update(self, request: Request, username: str | None = None) -> Response:
        account = self.get_object()
        data = UserUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        change = services.account_update(actor=request.user, user=account, **data.validated_data)
        return _account_answer(change, created=False)


ACCEPTED = status.HTTP_202_ACCEPTED
__all__ = ["ACCEPTED", "ERROR_SCHEMA", "OpenApiResponse"]
