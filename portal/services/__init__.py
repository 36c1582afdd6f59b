"""The kernel's writes, through the operation gate: one module per concern.

- ``approvals``: deciding requests, and the registry of what an approved one runs
- ``accounts``: accounts, grants of power, two-factor authenticators, API tokens
- ``alerts``: acknowledging and resolving alerts

Callers write ``services.approval_approve(...)``: every service is re-exported here.
"""

from __future__ import annotations

from .accounts import (
    AccountChange,
    IssuedToken,
    account_create,
    account_update,
    api_token_issue,
    api_token_revoke,
    authenticator_enrol,
    authenticator_reset,
    password_change,
    user_create,
    user_role_grant,
)
from .alerts import alert_acknowledge, alert_resolve
from .approvals import (
    APPROVED_ACTIONS,
    ApprovedAction,
    approval_approve,
    approval_cancel,
    approval_deny,
    approval_revoke,
    approvals_expire,
    register_approved_action,
)

__all__ = [
    "APPROVED_ACTIONS",
    "AccountChange",
    "ApprovedAction",
    "IssuedToken",
    "account_create",
    "account_update",
    "alert_acknowledge",
    "alert_resolve",
    "api_token_issue",
    "api_token_revoke",
    "approval_approve",
    "approval_cancel",
    "approval_deny",
    "approval_revoke",
    "approvals_expire",
    "authenticator_enrol",
    "authenticator_reset",
    "password_change",
    "register_approved_action",
    "user_create",
    "user_role_grant",
]
