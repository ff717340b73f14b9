"""Run state transitions under concurrency, against the catalog DB over the wire.

Many transition requests for the same run arrive at once through several catalog
clients (as from several catalog instances), mixing valid, invalid, stale and
redelivered ones. Whatever the interleaving, the run must end with one consistent
history: a valid path, no transition applied twice, every applied request once in
it, and the ``run_events`` copy equal to it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta

import pytest

from edgeback_catalog.domain import Actor, JobId, Role, RunId
from edgeback_catalog.mongo import CatalogDb
from edgeback_catalog.runs import TransitionOutcome, TransitionRequest
from edgeback_catalog.runstate import TRANSITIONS, RunState
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_core.errors import InvalidTransitionError, StaleVersionError
from edgeback_core.ids import BackupHostId
from edgeback_core.settings import Secret

pytestmark = pytest.mark.integration

SERVICE = Actor(name="worker", role=Role.SERVICE)


@pytest.fixture
async def catalogs(mongo_url: str) -> AsyncIterator[list[Catalog]]:
    """Three catalogs, each with its own client, over one fresh database."""
    name = f"test_catalog_{uuid.uuid4().hex[:12]}"
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    async with AsyncExitStack() as stack:
        dbs = [await stack.enter_async_context(CatalogDb.open(mongo_url, name)) for _ in range(3)]
        try:
            yield [
                Catalog.build(db, box, offline_after=timedelta(seconds=60), probe=None)
                for db in dbs
            ]
        finally:
            await dbs[0].drop()


def requests_for(run_id: RunId, rng: random.Random, count: int) -> list[TransitionRequest]:
    made: list[TransitionRequest] = []
    for i in range(count):
        if made and i % 10 == 9:  # a redelivery: same request id as an earlier one
            made.append(rng.choice(made))
            continue
        made.append(
            TransitionRequest(
                run_id=run_id,
                target=rng.choice(list(RunState)),
                request_id=f"req-{i}",
                reason=f"r{i}",
                expected_version=rng.choice([None, None, 0, 1, 2, 3]),
            )
        )
    return made


async def test_concurrent_transitions_give_one_consistent_history(
    catalogs: list[Catalog],
) -> None:
    rng = random.Random(20260101)
    for round_no in range(4):
        run = await catalogs[0].runs.create(SERVICE, JobId("job-1"), BackupHostId("h1"))
        requests = requests_for(run.id, rng, 50)
        results = await asyncio.gather(
            *(catalogs[i % 3].runs.transition(r) for i, r in enumerate(requests)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                assert isinstance(result, InvalidTransitionError | StaleVersionError), result
        final = await catalogs[1].runs.get(run.id)
        history = final.history
        assert [s.seq for s in history] == list(range(len(history))), round_no
        assert final.version == len(history) - 1
        assert history[-1].to_state == final.state
        for before, after in itertools.pairwise(history):
            assert after.from_state == before.to_state
            assert after.to_state in TRANSITIONS[before.to_state]
        applied = [r for r in results if isinstance(r, TransitionOutcome) and r.applied]
        applied_ids = sorted(r.run.history[-1].request_id for r in applied)
        step_ids = [s.request_id for s in history[1:]]
        assert len(step_ids) == len(set(step_ids)), "a request applied twice"
        assert sorted(step_ids) == applied_ids
        assert await catalogs[2].runs.events(run.id) == list(history)


async def test_a_sequence_of_workers_drives_a_run_to_the_end(catalogs: list[Catalog]) -> None:
    runs = catalogs[0].runs
    run = await runs.create(SERVICE, JobId("job-2"), BackupHostId("h1"))
    steps = [RunState.QUEUED, RunState.RUNNING, RunState.CANCELLING, RunState.SUCCEEDED]
    for n, target in enumerate(steps):
        request = TransitionRequest(run_id=run.id, target=target, request_id=f"s{n}")
        outcome = await runs.transition(request)
        assert outcome.applied and outcome.run.state is target
        again = await runs.transition(request)  # redelivered: answered, not applied twice
        assert not again.applied and again.run.version == outcome.run.version
    with pytest.raises(InvalidTransitionError):
        await runs.transition(
            TransitionRequest(run_id=run.id, target=RunState.FAILED, request_id="late")
        )
    with pytest.raises(StaleVersionError):
        await runs.transition(
            TransitionRequest(
                run_id=run.id, target=RunState.FAILED, request_id="stale", expected_version=1
            )
        )
    assert [s.to_state for s in (await runs.get(run.id)).history] == [RunState.PENDING, *steps]
