"""Wire structs of restore jobs (issue 11): a named, saved ``RestoreSpec`` that makes
restores, each confirmed with its own verification code (S6).

Creating a job saves it and makes its first restore (``pending_verification``, the code
in the reply, as ``catalog.restore.create``); starting it again makes a new restore of
the job's spec with a new code. Either is confirmed with ``catalog.restore.start``
(``POST /restores/{id}/start``). RPC names are ``RESTORE_JOB_*``
(``catalog.restore_job.<verb>``); the rules are in ``docs/restores.md``, "Restore jobs".
"""

from __future__ import annotations

from datetime import datetime

from edgeback_core.messages.base import Message
from edgeback_core.messages.catalog import ActorRef, Request
from edgeback_core.messages.restores import RestoreInfo, RestoreSpec

RESTORE_JOB_CREATE = "catalog.restore_job.create"
RESTORE_JOB_GET = "catalog.restore_job.get"
RESTORE_JOB_LIST = "catalog.restore_job.list"
RESTORE_JOB_UPDATE = "catalog.restore_job.update"
RESTORE_JOB_CLONE = "catalog.restore_job.clone"
RESTORE_JOB_DELETE = "catalog.restore_job.delete"
RESTORE_JOB_SET_ENABLED = "catalog.restore_job.set_enabled"
RESTORE_JOB_START = "catalog.restore_job.start"
RESTORE_JOB_STOP = "catalog.restore_job.stop"

MAX_PAGE = 200


class RestoreJobInfo(Message, frozen=True, kw_only=True):
    id: str
    name: str
    """The spec's ``name``: unique among restore jobs."""
    revision: int
    """Name it when editing: the edit is refused (``stale_version``) if it moved on."""
    enabled: bool
    spec: RestoreSpec
    created_by: str
    created_at: datetime
    updated_at: datetime


class RestoreJobCreate(Request, frozen=True, kw_only=True):
    """Save a restore job (``spec.name`` names it) and make its first restore."""

    actor: ActorRef
    spec: RestoreSpec


class RestoreJobStarted(Message, frozen=True, kw_only=True):
    """A new restore of the job, ``pending_verification``: start it with
    ``verification_code`` (shown once). ``cancelled``: older restores of the job still
    waiting for their code, superseded by this one."""

    job: RestoreJobInfo
    restore: RestoreInfo
    verification_code: str
    cancelled: list[str] = []


class RestoreJobGet(Request, frozen=True, kw_only=True):
    actor: ActorRef
    job_id: str


class RestoreJobDetail(Message, frozen=True, kw_only=True):
    job: RestoreJobInfo
    restores: list[RestoreInfo]
    """Its most recent restores (up to 50), newest first."""


class RestoreJobList(Request, frozen=True, kw_only=True):
    """Restore jobs the actor sees, by name; every filter optional."""

    actor: ActorRef
    host_id: str | None = None
    enabled: bool | None = None
    name: str | None = None
    """Part of the name, any case."""
    after: str | None = None
    """``next_after`` of the previous page."""
    limit: int = 50


class RestoreJobListReply(Message, frozen=True, kw_only=True):
    jobs: list[RestoreJobInfo]
    next_after: str | None = None
    """None: this was the last page."""


class RestoreJobUpdate(Request, frozen=True, kw_only=True):
    """Replace the job's spec if it is still at ``revision``."""

    actor: ActorRef
    job_id: str
    revision: int
    spec: RestoreSpec


class RestoreJobChanged(Message, frozen=True, kw_only=True):
    """An edit or delete: ``cancelled`` names the job's restores it cancelled (those
    waiting for their code or scheduled: they were bound to the old spec)."""

    job: RestoreJobInfo
    cancelled: list[str] = []


class RestoreJobClone(Request, frozen=True, kw_only=True):
    actor: ActorRef
    job_id: str
    name: str


class RestoreJobDelete(Request, frozen=True, kw_only=True):
    actor: ActorRef
    job_id: str


class RestoreJobSetEnabled(Request, frozen=True, kw_only=True):
    actor: ActorRef
    job_id: str
    enabled: bool


class RestoreJobStart(Request, frozen=True, kw_only=True):
    """Make a new restore of the job's spec (refused ``job_disabled``, or
    ``restore_job_busy`` while one of its restores is queued or running)."""

    actor: ActorRef
    job_id: str


class RestoreJobStop(Request, frozen=True, kw_only=True):
    """Cancel the job's queued or running restores (``cancelling`` once a worker has one)."""

    actor: ActorRef
    job_id: str


class RestoreJobStopped(Message, frozen=True, kw_only=True):
    restores: list[RestoreInfo]
    """The restores it stopped, as they are now (empty: none was queued or running)."""
