"""The routes of restore jobs (issue 11), beside the rest of the table (``table.py``).

A restore job is a named, saved restore definition. Creating or starting it makes a
restore waiting for the verification code the answer shows (S6), confirmed with
``POST /restores/{id}/start`` like any restore (``docs/restores.md``, "Restore jobs").
"""

from __future__ import annotations

from edgeback_api import restorejobs
from edgeback_api.paging import Page
from edgeback_api.routing import Access, Route, row, rpc
from edgeback_core.messages import restorejobs as rj

USER = Access.USER


def restore_job_routes() -> list[Route]:
    one = "/restore-jobs/{job_id}"
    return [
        row(
            "GET",
            "/restore-jobs",
            "list_restore_jobs",
            "Restore jobs I may see, by name (filter by host, enabled, part of the name)",
            USER,
            restorejobs.restore_jobs,
            query=restorejobs.RestoreJobQuery,
            reply=Page[rj.RestoreJobInfo],
        ),
        row(
            "POST",
            "/restore-jobs",
            "create_restore_job",
            "Save a restore job and make its first restore: answers its verification code",
            USER,
            rpc(rj.RESTORE_JOB_CREATE, rj.RestoreJobStarted),
            request=rj.RestoreJobCreate,
            reply=rj.RestoreJobStarted,
            status=201,
        ),
        row(
            "GET",
            one,
            "get_restore_job",
            "A restore job and its most recent restores",
            USER,
            rpc(rj.RESTORE_JOB_GET, rj.RestoreJobDetail),
            request=rj.RestoreJobGet,
            reply=rj.RestoreJobDetail,
        ),
        row(
            "PUT",
            one,
            "edit_restore_job",
            "Replace a restore job's spec (name the revision); cancels its waiting restores",
            USER,
            rpc(rj.RESTORE_JOB_UPDATE, rj.RestoreJobChanged),
            request=rj.RestoreJobUpdate,
            reply=rj.RestoreJobChanged,
        ),
        row(
            "DELETE",
            one,
            "delete_restore_job",
            "Delete a restore job (refused while a restore of it runs); cancels its waiting ones",
            USER,
            rpc(rj.RESTORE_JOB_DELETE, rj.RestoreJobChanged),
            request=rj.RestoreJobDelete,
            reply=rj.RestoreJobChanged,
        ),
        row(
            "POST",
            f"{one}/clone",
            "clone_restore_job",
            "Copy a restore job under a new name (no restore made)",
            USER,
            rpc(rj.RESTORE_JOB_CLONE, rj.RestoreJobInfo),
            request=rj.RestoreJobClone,
            reply=rj.RestoreJobInfo,
            status=201,
        ),
        row(
            "POST",
            f"{one}/enable",
            "enable_restore_job",
            "Enable a restore job",
            USER,
            restorejobs.enable,
            reply=rj.RestoreJobInfo,
        ),
        row(
            "POST",
            f"{one}/disable",
            "disable_restore_job",
            "Disable a restore job: it makes no restore, its scheduled ones wait",
            USER,
            restorejobs.disable,
            reply=rj.RestoreJobInfo,
        ),
        row(
            "POST",
            f"{one}/start",
            "start_restore_job",
            "Make a new restore of the job: answers its verification code",
            USER,
            rpc(rj.RESTORE_JOB_START, rj.RestoreJobStarted),
            request=rj.RestoreJobStart,
            reply=rj.RestoreJobStarted,
            status=201,
        ),
        row(
            "POST",
            f"{one}/stop",
            "stop_restore_job",
            "Stop the job's queued or running restores",
            USER,
            rpc(rj.RESTORE_JOB_STOP, rj.RestoreJobStopped),
            request=rj.RestoreJobStop,
            reply=rj.RestoreJobStopped,
        ),
    ]
