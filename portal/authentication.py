"""API token authentication: django-rest-knox's digests behind ``Authorization: Token <key>``.

The database holds a SHA-512 digest of each key and the key's first 15 characters (to find the
row), never the key itself: a copy of the table signs nobody in. This module only refuses, before
any query, a header that cannot be a key (knox would decode it as UTF-8 and look it up, and
PostgreSQL refuses NUL characters with an error rather than a miss).
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework import exceptions

# Keys knox issues are 64 hex characters; keys of the plain DRF tokens migrated to digests
# (portal migration 0004) are 40.
KEY_PATTERN = re.compile(rb"[0-9a-f]{40}|[0-9a-f]{64}")


class TokenAuthentication(KnoxTokenAuthentication):
    def authenticate_credentials(self, token: bytes) -> Any:
        if not KEY_PATTERN.fullmatch(token):
            raise exceptions.AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(token)


class TokenScheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme: the same ``tokenAuth`` the schema had with DRF's tokens."""

    target_class = "portal.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> Any:
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix="Token"
        )
