"""The catalog DB over the wire: what the catalog service relies on, checked against the
server at EDGEBACK_MONGO_URL (mongoeco in development and CI, MongoDB in production)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

pytestmark = pytest.mark.integration

Doc = dict[str, Any]


@pytest.fixture
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[Doc]]:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    name = f"test_{uuid.uuid4().hex[:16]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


async def test_insert_and_find_with_filter_and_sort(db: AsyncDatabase[Doc]) -> None:
    runs = db["runs"]
    await runs.insert_many(
        [
            {"_id": "r1", "job": "j1", "state": "done", "bytes": 30},
            {"_id": "r2", "job": "j1", "state": "failed", "bytes": 10},
            {"_id": "r3", "job": "j2", "state": "done", "bytes": 20},
        ]
    )

    found = await runs.find({"job": "j1"}).sort("bytes", ASCENDING).to_list()
    assert [d["_id"] for d in found] == ["r2", "r1"]
    assert await runs.find_one({"_id": "r3"}) == {
        "_id": "r3",
        "job": "j2",
        "state": "done",
        "bytes": 20,
    }
    assert await runs.count_documents({"state": "done"}) == 2
    assert await runs.find_one({"_id": "missing"}) is None


async def test_unique_index_rejects_duplicate(db: AsyncDatabase[Doc]) -> None:
    jobs = db["jobs"]
    await jobs.create_index([("name", ASCENDING)], unique=True, name="name_unique")
    await jobs.insert_one({"name": "nightly", "vm": "vm-1"})

    with pytest.raises(DuplicateKeyError) as excinfo:
        await jobs.insert_one({"name": "nightly", "vm": "vm-2"})

    assert excinfo.value.code == 11000
    assert await jobs.count_documents({}) == 1
    assert (await jobs.find_one({"name": "nightly"}) or {})["vm"] == "vm-1"
    assert "name_unique" in await jobs.index_information()


async def test_find_one_and_update_claims_once_and_upserts(db: AsyncDatabase[Doc]) -> None:
    runs = db["runs"]
    await runs.insert_one({"_id": "r1", "state": "queued", "attempts": 0})

    claimed = await runs.find_one_and_update(
        {"_id": "r1", "state": "queued"},
        {"$set": {"state": "running", "worker": "w1"}, "$inc": {"attempts": 1}},
        return_document=ReturnDocument.AFTER,
    )
    again = await runs.find_one_and_update(
        {"_id": "r1", "state": "queued"},
        {"$set": {"state": "running", "worker": "w2"}},
    )
    counter = await runs.find_one_and_update(
        {"_id": "seq"},
        {"$inc": {"value": 5}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )

    assert claimed == {"_id": "r1", "state": "running", "attempts": 1, "worker": "w1"}
    assert again is None  # the conditional update found nothing left to claim
    assert (await runs.find_one({"_id": "r1"}) or {})["worker"] == "w1"
    assert counter == {"_id": "seq", "value": 5}
