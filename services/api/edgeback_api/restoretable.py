"""The routes of restores (S1-S7) and of the events and live progress of runs and
restores, beside the rest of the table (``table.py``).

A restore is created with the verification code it must be started with (S6): the
code is shown once, bound to that request, single-use and expiring; a wrong one
changes nothing and is audited (the catalog's ``restorecodes``).
"""

from __future__ import annotations

from edgeback_api import progress, restores
from edgeback_api.paging import Page
from edgeback_api.routing import EVENT_STREAM, Access, Route, row, rpc
from edgeback_api.wire import (
    LiveQuery,
    RestoreEventQuery,
    RestorePointQuery,
    RestoreQuery,
    RunEventQuery,
)
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import restores as r
from edgeback_core.messages import runs

USER = Access.USER


def restore_routes() -> list[Route]:
    one = "/restores/{restore_id}"
    return [
        row(
            "GET",
            "/restore-points",
            "list_restore_points",
            "Restore points (complete backup sets) by VM, pool and time, newest first",
            USER,
            restores.points,
            query=RestorePointQuery,
            reply=Page[r.RestorePoint],
        ),
        row(
            "POST",
            "/restores",
            "create_restore",
            "Create a restore: answers its verification code (shown once) to start it with",
            USER,
            rpc(r.RESTORE_CREATE, r.RestoreCreated),
            request=r.RestoreCreate,
            reply=r.RestoreCreated,
            status=201,
        ),
        row(
            "GET",
            "/restores",
            "list_restores",
            "Restores I may see, newest first",
            USER,
            restores.restores,
            query=RestoreQuery,
            reply=Page[r.RestoreInfo],
        ),
        row(
            "GET",
            one,
            "get_restore",
            "A restore with each VM's outcome and per-disk figures",
            USER,
            rpc(r.RESTORE_GET, r.RestoreInfo),
            request=r.RestoreGet,
            reply=r.RestoreInfo,
        ),
        row(
            "POST",
            f"{one}/start",
            "start_restore",
            "Start a restore with its verification code (single-use, expiring)",
            USER,
            rpc(r.RESTORE_START, r.RestoreInfo),
            request=r.RestoreStart,
            reply=r.RestoreInfo,
            status=202,
        ),
        row(
            "POST",
            f"{one}/run",
            "run_restore",
            "Queue a verified restore of schedule manual now (restore_not_runnable otherwise)",
            USER,
            rpc(r.RESTORE_RUN, r.RestoreInfo),
            request=r.RestoreRun,
            reply=r.RestoreInfo,
            status=202,
        ),
        row(
            "POST",
            f"{one}/stop",
            "stop_restore",
            "Stop a restore: at once before a worker has it, else through cancelling",
            USER,
            rpc(r.RESTORE_CANCEL, r.RestoreInfo),
            request=r.RestoreCancel,
            reply=r.RestoreInfo,
        ),
        row(
            "GET",
            f"{one}/events",
            "list_restore_events",
            "A restore's events, oldest first",
            USER,
            restores.restore_events,
            query=RestoreEventQuery,
            reply=Page[r.RestoreLogEntry],
        ),
        row(
            "GET",
            f"{one}/progress",
            "follow_restore",
            "A restore's events live (server-sent events) until it ends",
            USER,
            progress.restore_progress,
            query=LiveQuery,
            reply=r.RestoreEvent,
            media=EVENT_STREAM,
        ),
    ]


def run_routes() -> list[Route]:
    one = "/runs/{run_id}"
    return [
        row(
            "POST",
            f"{one}/stop",
            "stop_run",
            "Stop a run: a pending one at once, else its workers stop (cancelling)",
            USER,
            rpc(b.RUN_CANCEL, m.RunTransitionReply),
            request=b.RunCancel,
            reply=m.RunTransitionReply,
        ),
        row(
            "GET",
            f"{one}/events",
            "list_run_events",
            "A run's events, oldest first",
            USER,
            restores.run_events,
            query=RunEventQuery,
            reply=Page[b.RunLogEntry],
        ),
        row(
            "GET",
            f"{one}/progress",
            "follow_run",
            "A run's events live (server-sent events) until it ends",
            USER,
            progress.run_progress,
            query=LiveQuery,
            reply=runs.RunEvent,
            media=EVENT_STREAM,
        ),
    ]
