"""S3 on the dev cluster's radosgw through aiobotocore, the client of the object pool."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError
from types_aiobotocore_s3.client import S3Client

pytestmark = pytest.mark.integration


@pytest.fixture
async def s3(s3_config: dict[str, str]) -> AsyncIterator[S3Client]:
    session = get_session()
    config = AioConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 2})
    async with session.create_client(
        "s3",
        endpoint_url=s3_config["endpoint_url"],
        aws_access_key_id=s3_config["access_key"],
        aws_secret_access_key=s3_config["secret_key"],
        region_name=s3_config["region"],
        config=config,
    ) as client:
        yield client


@pytest.fixture
async def bucket(s3: S3Client) -> AsyncIterator[str]:
    name = f"edgeback-test-{uuid.uuid4().hex[:12]}"
    await s3.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        listed = await s3.list_objects_v2(Bucket=name)
        for obj in listed.get("Contents", []):
            await s3.delete_object(Bucket=name, Key=obj["Key"])
        await s3.delete_bucket(Bucket=name)


async def test_put_get_and_list(s3: S3Client, bucket: str) -> None:
    chunk = os.urandom(1024 * 1024 + 17)
    await s3.put_object(Bucket=bucket, Key="chunks/ab/abcdef", Body=chunk)
    await s3.put_object(Bucket=bucket, Key="chunks/cd/cdef01", Body=b"x")
    await s3.put_object(Bucket=bucket, Key="manifests/vm1", Body=b"{}")

    got = await s3.get_object(Bucket=bucket, Key="chunks/ab/abcdef")
    async with got["Body"] as body:
        data = await body.read()
    listed = await s3.list_objects_v2(Bucket=bucket, Prefix="chunks/")

    assert hashlib.sha256(data).digest() == hashlib.sha256(chunk).digest()
    assert got["ContentLength"] == len(chunk)
    assert got["ETag"].strip('"') == hashlib.md5(chunk).hexdigest()  # noqa: S324 (S3's ETag)
    assert [(o["Key"], o["Size"]) for o in listed.get("Contents", [])] == [
        ("chunks/ab/abcdef", len(chunk)),
        ("chunks/cd/cdef01", 1),
    ]


async def test_missing_key_and_deleted_bucket_are_reported(s3: S3Client) -> None:
    name = f"edgeback-test-{uuid.uuid4().hex[:12]}"
    await s3.create_bucket(Bucket=name)
    with pytest.raises(ClientError) as missing:
        await s3.get_object(Bucket=name, Key="nope")
    await s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as gone:
        await s3.head_bucket(Bucket=name)

    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
