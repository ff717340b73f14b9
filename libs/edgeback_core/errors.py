"""The error taxonomy shared by every service, and its one code registry.

Every error carries a stable snake_case ``code`` (shown in API problem bodies and in
failure events) and a ``retryable`` flag that the bus consumer wrapper uses to decide
between retrying a message and dead-lettering it. Adapters translate driver errors into
these at the boundary (``raise X from exc``) so that no caller sees a driver exception.

A class that declares a ``code`` registers it: codes are unique (a second class under a
taken code fails at import) and registered classes live here and keep the root
constructor shape ``(message, **details)``, so any process can rebuild any error it receives,
whoever raised it. :class:`ErrorBody` is the one wire form (RPC error replies, the
storage node's problem bodies): :func:`body_of` encodes, :func:`error_of` decodes. A
subclass elsewhere that keeps its parent's code (``SignatureError``) is a local
refinement and travels as its parent.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import msgspec

_registry: dict[str, type[EdgebackError]] = {}


class EdgebackError(Exception):
    """Root of all edgeback errors."""

    code: ClassVar[str] = "internal_error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, /, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: Mapping[str, Any] = details

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            _register(cls)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe view for problem bodies and failure events."""
        return msgspec.structs.asdict(body_of(self))


def _register(cls: type[EdgebackError]) -> None:
    taken = _registry.get(cls.code)
    if taken is not None and (taken.__module__, taken.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):
        raise TypeError(
            f"error code {cls.code!r} of {cls.__qualname__} is taken by {taken.__qualname__}"
        )
    if cls.__module__ != __name__:
        raise TypeError(
            f"{cls.__qualname__} declares code {cls.code!r} outside {__name__}: "
            "callers that never import its module could not decode it"
        )
    if not _rebuildable(cls):
        raise TypeError(f"{cls.__qualname__} must be constructible as (message, **details)")
    _registry[cls.code] = cls


def _rebuildable(cls: type[EdgebackError]) -> bool:
    """Whether ``cls(message, **details)`` can rebuild a received error: one positional
    parameter, ``**details``, and any other parameter keyword-only with a default (its
    value must then be kept in ``details``, as ``DeferredError`` keeps ``delay_s``)."""
    params = list(inspect.signature(cls).parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    rest = params[1:-1]
    return (
        len(params) >= 2
        and params[0].kind in positional
        and params[-1].kind is inspect.Parameter.VAR_KEYWORD
        and all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty for p in rest)
    )


_register(EdgebackError)


def registered() -> Mapping[str, type[EdgebackError]]:
    """Every error class by its code (read-only)."""
    return MappingProxyType(_registry)


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """The wire form of an error. New fields get defaults."""

    code: str
    message: str
    details: dict[str, Any] = {}
    retryable: bool = False
    kinds: tuple[str, ...] = ()
    """Codes of the error's ancestors, nearest first: a receiver that does not know
    ``code`` (a newer sender) rebuilds the nearest one it knows."""


def body_of(error: BaseException) -> ErrorBody:
    """The wire form of ``error``; anything but ours is a bug and travels as internal_error."""
    if not isinstance(error, EdgebackError):
        error = EdgebackError(f"{type(error).__name__}: {error}")
    mro = type(error).__mro__
    kinds = [c.code for c in mro if issubclass(c, EdgebackError) and "code" in c.__dict__]
    return ErrorBody(
        code=error.code,
        message=error.message,
        details={str(k): _plain(v) for k, v in error.details.items()},
        retryable=error.retryable,
        kinds=tuple(k for k in dict.fromkeys(kinds) if k != error.code),
    )


def error_of(body: ErrorBody) -> EdgebackError:
    """The error ``body`` describes: its class if the code is known, else the nearest
    known ancestor with the same ``retryable`` (the root, or :class:`TransientError`,
    when none is), with the unknown code kept in ``details["remote_code"]``."""
    cls = _registry.get(body.code)
    if cls is not None:
        return cls(body.message, **body.details)
    known = (_registry[k] for k in body.kinds if k in _registry)
    fallback = TransientError if body.retryable else EdgebackError
    cls = next((c for c in known if c.retryable == body.retryable), fallback)
    return cls(body.message, **{**body.details, "remote_code": body.code})


def _plain(value: Any) -> Any:
    """``value`` as JSON-native data (what a receiver decodes is what was sent)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


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


class OverloadedError(UnavailableError):
    """The server has no room for this request now; try again after ``retry_after_s``."""

    code = "overloaded"


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


class BodyIncompleteError(InvalidInputError):
    """A request body ended before its declared length (or was cut off)."""

    code = "body_incomplete"


class BodyTimeoutError(InvalidInputError):
    """A request body's next bytes did not arrive within the server's read timeout."""

    code = "body_timeout"


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


class DiffMismatchError(IntegrityError):
    """Chunks a snapshot diff called unchanged differ from the parent manifest."""

    code = "diff_mismatch"


class PlatformAuthError(PermanentError):
    """The cloud platform refused our Access Key / Secret Key (or the request signature)."""

    code = "platform_auth_failed"


class PlatformUnreachableError(UnavailableError):
    """The cloud platform's API could not be reached (address, port, TLS or network)."""

    code = "platform_unreachable"


class StorageNodeUnreachableError(UnavailableError):
    """The storage node did not answer for longer than the job's reconnect time."""

    code = "storage_node_unreachable"


class CatalogUnreachableError(UnavailableError):
    """The catalog did not answer a worker's call for longer than the job's reconnect
    time (its process, its database or the way to it down)."""

    code = "catalog_unreachable"


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


class LoginThrottledError(UnauthenticatedError):
    """Too many failed logins for this user or from this address: try again after
    ``details["retry_after_s"]``."""

    code = "login_throttled"
    retryable = True


class PermissionDeniedError(PermanentError):
    """The caller is known but not allowed to do this."""

    code = "permission_denied"


class ChunkFormatError(IntegrityError):
    """A chunk record's header is malformed (magic, version, codec or lengths)."""

    code = "chunk_header_invalid"


class QuarantinedError(IntegrityError):
    """A pool or manifest failed its checks when the node opened it and is not served."""

    code = "quarantined"


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


class InvalidScheduleError(InvalidInputError):
    """A schedule is malformed or out of range; ``details`` hold ``field`` and ``reason``."""

    code = "invalid_schedule"


class UnknownTimeZoneError(InvalidScheduleError):
    """The schedule's ``tz`` is not an IANA time zone known to this host."""

    code = "unknown_time_zone"


class UnknownReferenceError(InvalidInputError):
    """The request names a resource that does not exist (a dangling reference)."""

    code = "unknown_reference"


class HostNotActiveError(ConflictError):
    """The backup host exists but is not activated yet."""

    code = "host_not_active"


class PlatformInUseError(ConflictError):
    """The platform cannot be removed: jobs still reference it."""

    code = "platform_in_use"


class PoolInUseError(ConflictError):
    """The registered pool cannot be removed: jobs still write to it."""

    code = "pool_in_use"


class GroupInUseError(ConflictError):
    """The user group cannot be deleted: users, backup hosts, platforms or jobs still
    name it (``details`` count each)."""

    code = "group_in_use"


class LastAdminError(ConflictError):
    """The change would leave no admin (deleting or demoting the last one)."""

    code = "last_admin"


class PoolNotOnNodeError(UnknownReferenceError):
    """The storage node answers but holds no pool by that name."""

    code = "pool_not_on_node"


class PoolAccessMissingError(InvalidInputError):
    """The backup host holds no node token for the pool in its pool access directory."""

    code = "pool_access_missing"


class NotAStorageNodeError(InvalidInputError):
    """The URL answers, but not as an edgeback storage node (its pool status is no such
    document): a mistyped node URL, not an outage."""

    code = "not_a_storage_node"


class PoolTokenRefusedError(InvalidInputError):
    """The storage node refused the backup host's token for the pool (unknown token, or
    one without the right on that pool)."""

    code = "pool_token_refused"


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


class RunCancelledError(ConflictError):
    """The run was cancelled while this step of it ran: the step stops, what it wrote is
    left to garbage collection, and the VM ends failed with this code."""

    code = "run_cancelled"


class GoneError(PermanentError):
    """The thing existed but may no longer be used (HTTP 410)."""

    code = "gone"


class CapabilityNotFoundError(NotFoundError):
    """No image capability has this id (never had, or purged after it expired)."""

    code = "capability_not_found"


class CapabilityExpiredError(GoneError):
    """The image capability's expiry has passed."""

    code = "capability_expired"


class CapabilityRevokedError(GoneError):
    """The image capability was revoked."""

    code = "capability_revoked"


class PoolEncryptedError(ConflictError):
    """The storage node cannot do this on an encrypted pool: it holds none of its keys
    (serving a disk version as a raw image needs the chunks' plaintext)."""

    code = "pool_encrypted"


class RangeNotSatisfiableError(InvalidInputError):
    """A byte range lies past the end of what was asked for (HTTP 416)."""

    code = "range_not_satisfiable"


class InvalidRestoreError(InvalidInputError):
    """A restore request breaks its rules; ``details``: ``codes`` (stable, from
    ``messages.restores``) and ``problems`` (one text each)."""

    code = "invalid_restore"


class VerificationCodeError(PermanentError):
    """The verification code of a restore is wrong: nothing changed (the try is audited)."""

    code = "verification_code_wrong"


class VerificationCodeExpiredError(VerificationCodeError):
    """The restore's verification code expired before it was used: create it again."""

    code = "verification_code_expired"


class VerificationCodeUsedError(VerificationCodeError):
    """The restore's verification code was used already (it is single-use)."""

    code = "verification_code_used"


class RestoreNotRunnableError(ConflictError):
    """Only a verified (``scheduled``) restore of schedule ``manual`` is run by hand;
    ``details``: ``state`` and ``schedule`` of the restore as it is."""

    code = "restore_not_runnable"


class RestoreJobBusyError(ConflictError):
    """A restore of the restore job is queued or running: the job cannot be started,
    edited or deleted until it ends; ``details["restores"]`` names them."""

    code = "restore_job_busy"


class CatalogNotEmptyError(ConflictError):
    """A pool import needs a catalog without backup sets of its own runs."""

    code = "catalog_not_empty"


class ScriptFailedError(PermanentError):
    """A job's pre-script exited non-zero or timed out: the VM is not backed up."""

    code = "pre_script_failed"


class InstantRestoreFailedError(PermanentError):
    """An instant restore failed before commit: its migrations were aborted and the
    original images put back; ``details["disks"]`` says what happened to each disk."""

    code = "instant_restore_failed"
