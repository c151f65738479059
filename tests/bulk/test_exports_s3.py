"""Exports in S3-compatible storage, against a real S3 endpoint over HTTP (moto's server,
``tests/fixtures/s3.py``): the upload, the presigned link, failures, and the sweep."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from tests.bulk.test_exports import WEEK, export, export_files, parsed, payment_record, seed_payments
from tests.fixtures.notifications import MakeRuntime
from tests.fixtures.remnawave import Panel
from tests.fixtures.s3 import S3Bucket
from worker_app.config import load_settings
from worker_app.errors import PermanentError, UpstreamUnavailable
from worker_app.exports import LocalStorage, S3Location, S3Storage, storage_for
from worker_app.runtime import Runtime

TTL_S = 24 * 3600


@pytest.fixture
def s3_runtime(make_runtime: MakeRuntime, panel: Panel, s3: S3Bucket, tmp_path: Path) -> Runtime:
    """Exports to ``<bucket>/exports`` on the emulator, staged in ``tmp_path/staging``."""
    return make_runtime(REMNAWAVE_URL=panel.url, EXPORT_DIR=str(tmp_path / "staging"), EXPORT_S3_URL=s3.url(),
                        EXPORT_BATCH_ROWS=10)  # fmt: skip


def test_an_export_is_uploaded_and_its_presigned_link_downloads_the_same_bytes(
    s3_runtime: Runtime, s3: S3Bucket, clean_tables: sa.Engine
) -> None:
    # Given payments, and exports going to S3
    seed_payments(clean_tables)
    job_id = str(uuid.uuid4())
    # When the week is exported as CSV
    started = time.time()
    result, _ = export(s3_runtime, "payments", "csv", WEEK, job_id=job_id)
    # Then the object is the job's, under the prefix, and nothing is left in the staging directory
    key = f"exports/{job_id}/payments-2026-12-01_2026-12-07.csv"
    assert s3.keys() == [key]
    assert export_files(s3_runtime.settings.export_dir) == []
    stored = s3.client.get_object(Bucket=s3.bucket, Key=key)
    body = stored["Body"].read()
    assert (result["storage"], result["rows"], result["bytes"]) == ("s3", 3, len(body))
    assert stored["ContentType"] == "text/csv; charset=utf-8"
    # And its presigned link, valid as long as the export is kept, downloads the same bytes
    link = requests.get(result["url"], timeout=10)
    assert link.status_code == 200 and link.content == body
    assert 'filename="payments-2026-12-01_2026-12-07.csv"' in link.headers["Content-Disposition"]
    assert abs(_expires_in(result["url"]) - TTL_S) <= time.time() - started + 1
    assert parsed(body, "csv") == [
        {k: "" if v is None else str(v) for k, v in payment_record(n).items()} for n in (1, 5, 2)
    ]


def _expires_in(url: str) -> int:
    from urllib.parse import parse_qs, urlsplit

    return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])


def test_a_large_export_goes_up_in_parts_and_comes_back_whole(s3: S3Bucket, tmp_path: Path) -> None:
    # Given an export of 20 MiB (three 8 MiB parts)
    storage = S3Storage(s3.url("exports"), LocalStorage(tmp_path))
    chunk = hashlib.sha256(b"seed").hexdigest().encode() * 32_768  # 2 MiB
    job_id = str(uuid.uuid4())

    def write(file: Any) -> int:
        for _ in range(10):
            file.write(chunk)
        return 10

    _, stored = storage.save(job_id, "audit-all-2026-12-08.jsonl", write)
    # When its presigned link is followed
    link = storage.link(load_settings({}), stored, int(time.time()) + 600, time.time())
    body = requests.get(link, timeout=30).content
    # Then the same 20 MiB come back, and nothing is left staged or half-uploaded
    assert stored.size == len(body) == 20 * 1024**2
    assert hashlib.sha256(body).digest() == hashlib.sha256(chunk * 10).digest()
    assert export_files(tmp_path) == [] and s3.client.list_multipart_uploads(Bucket=s3.bucket).get(
        "Uploads"
    ) in (None, [])


def test_a_missing_bucket_is_a_permanent_error_and_leaves_nothing_staged(
    make_runtime: MakeRuntime, panel: Panel, s3: S3Bucket, tmp_path: Path, clean_tables: sa.Engine
) -> None:
    seed_payments(clean_tables)
    missing = f"{s3.endpoint}/no-such-bucket-{uuid.uuid4().hex[:8]}/exports"
    runtime = make_runtime(
        REMNAWAVE_URL=panel.url, EXPORT_DIR=str(tmp_path / "staging"), EXPORT_S3_URL=missing
    )
    with pytest.raises(PermanentError, match=r"S3 upload of s3://no-such-bucket-.*: 404 NoSuchBucket"):
        export(runtime, "payments", "csv")
    assert export_files(tmp_path / "staging") == []


def test_an_unreachable_store_is_upstream_unavailable(tmp_path: Path, s3: S3Bucket) -> None:
    from tests.fixtures.ports import free_port

    storage = S3Storage(f"http://127.0.0.1:{free_port()}/bucket", LocalStorage(tmp_path))

    def write(file: Any) -> int:
        file.write(b"x")
        return 1

    with pytest.raises(UpstreamUnavailable, match="S3 upload"):
        storage.save(str(uuid.uuid4()), "audit-all-2026-12-08.csv", write)
    assert export_files(tmp_path) == []


def test_the_sweep_deletes_expired_exports_and_stale_uploads_only(s3: S3Bucket, tmp_path: Path) -> None:
    # Given two exports under the prefix, objects that are not exports, and an interrupted multipart upload
    storage = S3Storage(s3.url("exports"), LocalStorage(tmp_path))
    jobs = [str(uuid.uuid4()) for _ in range(2)]
    for job_id in jobs:
        storage.save(job_id, "users-all-2026-12-08.csv", lambda f: f.write(b"id\r\n"))
    foreign = ["exports/README.txt", f"exports/{jobs[0]}/notes.txt", "other/x/users-all-2026-12-08.csv",
               f"other/{jobs[0]}/users-all-2026-12-08.csv"]  # fmt: skip
    for key in foreign:
        s3.client.put_object(Bucket=s3.bucket, Key=key, Body=b"keep")
    upload = s3.client.create_multipart_upload(
        Bucket=s3.bucket, Key=f"exports/{jobs[1]}/audit-all-2026-12-08.csv"
    )
    written = time.time()
    # When it is swept before the exports are TTL old: the leftover upload goes (moto dates uploads 2010)
    swept = storage.sweep(written - 5, TTL_S, 3600)
    assert swept.counts() == {"expired": 0, "leftovers": 1}
    assert s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []
    assert len(s3.keys()) == 6
    # And once they are: the two exports go, nothing else
    assert storage.sweep(written + TTL_S + 5, TTL_S, 3600).counts() == {"expired": 2, "leftovers": 0}
    assert s3.keys() == sorted(foreign)
    assert upload["UploadId"]


def test_s3_urls_name_the_endpoint_bucket_and_prefix(tmp_path: Path) -> None:
    assert S3Location.parse("s3://bucket/a/b") == S3Location(None, "bucket", "a/b")
    assert S3Location.parse("https://minio.local:9000/bucket") == S3Location(
        "https://minio.local:9000", "bucket", ""
    )
    assert S3Location.parse("http://minio:9000/bucket/exports/").key("j", "f.csv") == "exports/j/f.csv"
    assert S3Location.parse("s3://bucket").key("j", "f.csv") == "j/f.csv"


def test_the_storage_follows_the_settings(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    local = storage_for(make_runtime(EXPORT_DIR=str(tmp_path)).settings)
    remote = storage_for(make_runtime(EXPORT_DIR=str(tmp_path), EXPORT_S3_URL="s3://b/p").settings)
    assert (local.kind, remote.kind) == ("local", "s3")
