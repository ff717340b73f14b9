"""The error taxonomy shared by every service.

Every error carries a stable snake_case ``code`` (shown in API problem bodies and in
failure events) and a ``retryable`` flag that the bus consumer wrapper uses to decide
between retrying a message and dead-lettering it. Adapters translate driver errors into
these at the boundary (``raise X from exc``) so that no caller sees a driver exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class EdgebackError(Exception):
    """Root of all edgeback errors."""

    code: ClassVar[str] = "internal_error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, /, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: Mapping[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe view for problem bodies and failure events."""
        return {"code": self.code, "message": self.message, "details": dict(self.details)}


class ConfigError(EdgebackError):
    """Settings are missing or invalid; the process cannot start."""

    code = "config_error"


class TransientError(EdgebackError):
    """A dependency is down, slow or busy: trying again later may succeed."""

    code = "transient_error"
    retryable = True


class UnavailableError(TransientError):
    code = "unavailable"


class DeadlineExceededError(TransientError):
    code = "timeout"


class LockBusyError(TransientError):
    code = "lock_busy"


class DeferredError(TransientError):
    """Not now, and not a failure: a lease is busy or a retry is not due yet. A consumer
    parks the message for about ``delay_s`` and takes it again, without counting it
    against the queue's retries."""

    code = "deferred"

    def __init__(self, message: str, /, *, delay_s: float = 1.0, **details: Any) -> None:
        super().__init__(message, delay_s=delay_s, **details)
        self.delay_s = delay_s


class PermanentError(EdgebackError):
    """The request itself is wrong: repeating it gives the same answer."""

    code = "permanent_error"


class NotFoundError(PermanentError):
    code = "not_found"


class ConflictError(PermanentError):
    code = "conflict"


class InvalidInputError(PermanentError):
    code = "invalid_input"


class UnroutableError(PermanentError):
    """A message was published with ``mandatory`` and no queue was bound for it."""

    code = "unroutable"


class IntegrityError(EdgebackError):
    """Stored or read data does not match what it claims to be. Always loud."""

    code = "integrity_error"


class DigestMismatchError(IntegrityError):
    code = "digest_mismatch"


class ShortReadError(IntegrityError):
    code = "short_read"


class PlatformAuthError(PermanentError):
    """The cloud platform refused our Access Key / Secret Key (or the request signature)."""

    code = "platform_auth_failed"


class PlatformUnreachableError(UnavailableError):
    """The cloud platform's API could not be reached (address, port, TLS or network)."""

    code = "platform_unreachable"


class PlatformTlsError(PlatformUnreachableError):
    """The platform's certificate does not verify: retrying cannot fix it."""

    code = "platform_tls_failed"
    retryable = False


class PoolFullError(PermanentError):
    """A storage pool has no room (quota or filesystem) for the data being written.

    Not retryable by the same request now (the bus must not spin on it); it may clear
    later, after garbage collection or a larger quota, so it has its own code.
    """

    code = "pool_full"


class UnauthenticatedError(PermanentError):
    """A request carried no credentials or wrong ones."""

    code = "unauthenticated"


class PermissionDeniedError(PermanentError):
    """The caller is known but not allowed to do this."""

    code = "permission_denied"


class ChunkFormatError(IntegrityError):
    """A chunk record's header is malformed (magic, version, codec or lengths)."""

    code = "chunk_header_invalid"


class ManifestFormatError(IntegrityError):
    """A stored manifest is truncated, corrupted or of an unknown format."""

    code = "manifest_invalid"


class RbdPoolNotFoundError(NotFoundError):
    code = "rbd_pool_not_found"


class RbdImageNotFoundError(NotFoundError):
    code = "rbd_image_not_found"


class RbdSnapshotNotFoundError(NotFoundError):
    code = "rbd_snapshot_not_found"


class RbdImageExistsError(ConflictError):
    code = "rbd_image_exists"


class RbdSnapshotExistsError(ConflictError):
    code = "rbd_snapshot_exists"


class RbdNoSpaceError(PermanentError):
    """The Ceph cluster or pool is full (or over quota): writes cannot proceed."""

    code = "rbd_no_space"


class RbdIOError(TransientError):
    """librbd/librados reported an I/O error or an errno we do not classify."""

    code = "rbd_io_error"


class NameTakenError(ConflictError):
    """Another resource of the same kind already has this name."""

    code = "name_taken"


class AlreadyExistsError(ConflictError):
    """A resource with this id already exists."""

    code = "already_exists"


class InvalidTemplateError(InvalidInputError):
    """An RBD name template is malformed (placeholder missing, repeated or unknown)."""

    code = "invalid_template"


class UnknownReferenceError(InvalidInputError):
    """The request names a resource that does not exist (a dangling reference)."""

    code = "unknown_reference"


class HostNotActiveError(ConflictError):
    """The backup host exists but is not activated yet."""

    code = "host_not_active"


class PlatformInUseError(ConflictError):
    """The platform cannot be removed: jobs still reference it."""

    code = "platform_in_use"


class InvalidTransitionError(ConflictError):
    """The run's state machine does not allow this transition from its current state."""

    code = "invalid_transition"


class StaleVersionError(ConflictError):
    """The resource changed since the version the request was based on."""

    code = "stale_version"


class BackupHostUnreachableError(UnavailableError):
    """No worker of the backup host answered (none listening, or no reply in time)."""

    code = "backup_host_unreachable"


class CephConfUnreadableError(InvalidInputError):
    """The ceph.conf path of a Ceph storage cannot be read on its backup host."""

    code = "ceph_conf_unreadable"


class CephConnectError(UnavailableError):
    """The backup host could not connect to the Ceph cluster (monitors, keyring, client id)."""

    code = "ceph_connect_failed"


class JobBusyError(ConflictError):
    """The job has an active run: it cannot be deleted now."""

    code = "job_busy"


class JobDisabledError(ConflictError):
    """The job is disabled: it does not start runs."""

    code = "job_disabled"


class LeaseLostError(ConflictError):
    """The lease expired and was taken by another holder (or released): stop the work
    it guarded and acquire again."""

    code = "lease_lost"
