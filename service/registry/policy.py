"""Who may do what in the registry (admin checks use the shared `service.auth.access.require_admin`)."""

from contracts.envelope import ErrorCategory, Reason
from service.auth.access import Caller
from service.errors import GatewayError
from service.registry.model import Entry


def can_modify(caller: Caller, entry: Entry) -> bool:
    """Whoever created an entry, or an admin. Global entries need an admin (checked before)."""
    return caller.principal.is_admin or entry.created_by == caller.principal.id


def read_only(key: str) -> GatewayError:
    return GatewayError(f"'{key}' is a built-in integration and is read-only", ErrorCategory.auth, status=403,
                        reason=Reason.INTEGRATION_READ_ONLY)


def not_owner(key: str) -> GatewayError:
    return GatewayError(f"Integration '{key}' was registered by another principal; only its creator or an admin may "
                        "change it", ErrorCategory.auth, status=403, reason=Reason.NOT_OWNER)
