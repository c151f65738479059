"""``GET /exports/<job_id>``: the signed, expiring download of a local export — Flask's test client
over real PostgreSQL/Redis, and once through a real ``worker-app serve`` with raw HTTP requests.

Whether a request touched the filesystem is observed with a Python audit hook (``open``,
``os.scandir``, ``os.listdir`` events name every path the process opens or lists), not guessed."""

from __future__ import annotations

import http.client
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from tests.fixtures.api import serving
from tests.fixtures.notifications import MakeRuntime
from worker_app.exports import LocalStorage, Stored, link_signature, signed_link
from worker_app.runtime import Runtime
from worker_app.web.api import create_app

SECRET = "download-test-link-secret"
CSV = b'id,amount\r\n1,12.50000000\r\n2,"a ""quoted"", value"\r\n'
_FILE_EVENTS = ("open", "os.scandir", "os.listdir")
_recording: list[list[str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _recording and event in _FILE_EVENTS and args and isinstance(args[0], str | bytes | os.PathLike):
        _recording[-1].append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # for the life of the process: it records only inside touched_paths()


class Touched:
    """The paths the process opened or listed while :func:`touched_paths` was active."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def under(self, root: Path) -> list[str]:
        return [p for p in self.paths if Path(p).resolve().is_relative_to(root.resolve())]


def touched_paths() -> Any:
    from contextlib import contextmanager

    @contextmanager
    def recording() -> Iterator[Touched]:
        touched = Touched()
        _recording.append(touched.paths)
        try:
            yield touched
        finally:
            _recording.pop()

    return recording()


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    return tmp_path / "exports"


@pytest.fixture
def runtime(make_runtime: MakeRuntime, export_dir: Path) -> Runtime:
    return make_runtime(
        EXPORT_DIR=str(export_dir), EXPORT_LINK_SECRET=SECRET, EXPORT_PUBLIC_URL="http://dl.test"
    )


@pytest.fixture
def client(runtime: Runtime) -> FlaskClient:
    import worker_app

    return create_app(runtime, worker_app.broker).test_client()


def stored_export(root: Path, name: str = "payments-2026-12-01_2026-12-07.csv", data: bytes = CSV) -> Stored:
    """A finished export written by the real storage code."""

    def write(file: Any) -> None:
        file.write(data)

    return LocalStorage(root).save(str(uuid.uuid4()), name, write)[1]


def path_of(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def test_a_valid_link_streams_the_file_as_a_named_attachment(
    client: FlaskClient, runtime: Runtime, export_dir: Path
) -> None:
    # Given a finished export and its link
    stored = stored_export(export_dir)
    link = signed_link(runtime.settings, stored.job_id, int(time.time()) + 600)
    assert link.startswith(f"http://dl.test/exports/{stored.job_id}?expires=")
    # When it is followed
    with touched_paths() as touched:
        answer = client.get(path_of(link), buffered=True)
    # Then the file comes back as an attachment named after the export, never cached
    assert answer.status_code == 200 and answer.data == CSV
    assert answer.headers["Content-Disposition"] == "attachment; filename=payments-2026-12-01_2026-12-07.csv"
    assert answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert answer.headers["Cache-Control"] == "private, no-store"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Content-Length"] == str(len(CSV))
    assert touched.under(export_dir) != []  # (the audit hook sees the route's own reads)
    # And a download can be resumed from where it stopped
    rest = client.get(path_of(link), headers={"Range": "bytes=10-"}, buffered=True)
    assert rest.status_code == 206 and rest.data == CSV[10:]
    assert rest.headers["Content-Range"] == f"bytes 10-{len(CSV) - 1}/{len(CSV)}"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("users-all-2026-12-08.jsonl", "application/x-ndjson"),
        ("servers-all-2026-12-08.json", "application/json"),
    ],
)
def test_json_exports_are_served_with_their_type(
    client: FlaskClient, runtime: Runtime, export_dir: Path, name: str, content_type: str
) -> None:
    stored = stored_export(export_dir, name, b'{"id":1}\n')
    answer = client.get(
        path_of(signed_link(runtime.settings, stored.job_id, int(time.time()) + 60)), buffered=True
    )
    assert (answer.status_code, answer.headers["Content-Type"], answer.data) == (
        200,
        content_type,
        b'{"id":1}\n',
    )
    assert answer.headers["Content-Disposition"] == f"attachment; filename={name}"


def refused_links(job_id: str, other_job: str, key: bytes) -> list[tuple[str, str]]:
    """(query, why) pairs for ``job_id`` that must all be refused with 403."""
    future, past = int(time.time()) + 600, int(time.time()) - 1
    good = link_signature(key, job_id, future)
    flipped = good[:-1] + ("0" if good[-1] != "0" else "1")
    return [
        (f"expires={future}&sig={flipped}", "bad link signature"),
        (f"expires={future + 1}&sig={good}", "bad link signature"),
        (f"expires={future}&sig={link_signature(key, other_job, future)}", "bad link signature"),
        (f"expires={future}&sig={link_signature(b'another key', job_id, future)}", "bad link signature"),
        (f"expires={past}&sig={link_signature(key, job_id, past)}", "link expired at"),
        (f"expires={future}&sig={good.upper()}", "malformed link"),
        (f"expires=-{future}&sig={good}", "malformed link"),
        (f"expires={future}.0&sig={good}", "malformed link"),
        (f"expires={future}", "one expires and one sig"),
        (f"sig={good}", "one expires and one sig"),
        ("", "one expires and one sig"),
        (f"expires={future}&sig={good}&sig={good}", "one expires and one sig"),
        (f"expires={future}&sig={good[:-2]}", "malformed link"),
    ]


def test_tampered_foreign_or_expired_links_are_403_without_touching_the_filesystem(
    client: FlaskClient, export_dir: Path
) -> None:
    # Given a finished export
    stored = stored_export(export_dir)
    for query, why in refused_links(stored.job_id, str(uuid.uuid4()), SECRET.encode()):
        # When its link is altered, signed for another job or key, expired, or malformed
        with touched_paths() as touched:
            answer = client.get(f"/exports/{stored.job_id}?{query}", buffered=True)
        # Then it is refused with 403 naming why, before anything under EXPORT_DIR is read
        assert answer.status_code == 403, query
        assert why in answer.json["error"], (query, answer.json)
        assert touched.under(export_dir) == [], query


def test_paths_that_are_not_a_job_id_are_404_and_never_reach_the_filesystem(
    client: FlaskClient, runtime: Runtime, export_dir: Path, tmp_path: Path
) -> None:
    # Given an export, and a file outside EXPORT_DIR that a traversal would aim at
    stored = stored_export(export_dir)
    (tmp_path / "secret.csv").write_bytes(b"not for download")
    future = int(time.time()) + 600

    def signed(job_id: str) -> str:
        return f"expires={future}&sig={link_signature(SECRET.encode(), job_id, future)}"

    attempts = [
        "..", "../secret.csv", "..%2fsecret.csv", "..%2Fsecret.csv", "%2e%2e%2fsecret.csv", "%2e%2e",
        "%2F..%2Fsecret.csv", "/etc/passwd", "%2Fetc%2Fpasswd", f"{stored.job_id}/../../secret.csv",
        f"{stored.job_id}%2F..%2F..%2Fsecret.csv", f"{stored.job_id}/{stored.file_name}",
        stored.job_id.upper(), f"{stored.job_id}.csv", f" {stored.job_id}", stored.job_id.replace("-", ""),
        "12345", "%00", f"{stored.job_id}%00", str(tmp_path / "secret.csv"),
    ]  # fmt: skip
    for attempt in attempts:
        # When the path is anything but a job id (whatever the query signs, even that very text)
        with touched_paths() as touched:
            answers = [client.get(f"/exports/{attempt}?{signed(attempt)}", buffered=True),
                       client.get(f"/exports/{attempt}?{signed(stored.job_id)}", buffered=True)]  # fmt: skip
        # Then it is 404 (or 403), never the file, and nothing under EXPORT_DIR or its parent was read
        for answer in answers:
            assert answer.status_code in (403, 404), (attempt, answer.status_code)
            assert answer.data not in (CSV, b"not for download") and answer.is_json, attempt
        assert touched.under(tmp_path) == [], (attempt, touched.paths)


def test_a_job_without_a_finished_file_is_404_and_temporary_files_are_never_served(
    client: FlaskClient, runtime: Runtime, export_dir: Path
) -> None:
    # Given a job with only a temporary file (a run still writing, or killed), and a job never run
    job_id = str(uuid.uuid4())
    with LocalStorage(export_dir).temporary(job_id, "audit-all-2026-12-08.csv") as (file, _):
        file.write(b"half,written\r\n")
        file.flush()
        for missing in (job_id, str(uuid.uuid4())):
            # When their (validly signed) links are followed
            answer = client.get(
                path_of(signed_link(runtime.settings, missing, int(time.time()) + 60)), buffered=True
            )
            # Then there is nothing to download
            assert answer.status_code == 404 and "no such export" in answer.json["error"]


def test_a_symbolic_link_in_a_job_directory_is_not_followed(
    client: FlaskClient, runtime: Runtime, export_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "outside.csv").write_bytes(b"outside")
    job_id = str(uuid.uuid4())
    (export_dir / job_id).mkdir(parents=True)
    (export_dir / job_id / "users-all-2026-12-08.csv").symlink_to(tmp_path / "outside.csv")
    answer = client.get(path_of(signed_link(runtime.settings, job_id, int(time.time()) + 60)), buffered=True)
    assert answer.status_code == 404 and answer.data != b"outside"


def test_with_s3_storage_the_route_serves_nothing_from_disk(
    make_runtime: MakeRuntime, export_dir: Path
) -> None:
    import worker_app

    runtime = make_runtime(EXPORT_DIR=str(export_dir), EXPORT_LINK_SECRET=SECRET,
                           EXPORT_S3_URL="s3://cybervpn-exports/prod")  # fmt: skip
    stored = stored_export(export_dir)
    client = create_app(runtime, worker_app.broker).test_client()
    with touched_paths() as touched:
        answer = client.get(
            path_of(signed_link(runtime.settings, stored.job_id, int(time.time()) + 60)), buffered=True
        )
    assert answer.status_code == 404 and "object storage" in answer.json["error"]
    assert touched.under(export_dir) == []


def test_the_link_key_falls_back_to_api_token_then_a_development_key(
    make_runtime: MakeRuntime, export_dir: Path
) -> None:
    from worker_app.exports import DEV_LINK_KEY, link_key

    assert link_key(make_runtime(API_TOKEN="api-token-for-links").settings) == b"api-token-for-links"
    assert (
        link_key(make_runtime(API_TOKEN="api-token-for-links", EXPORT_LINK_SECRET="own").settings) == b"own"
    )
    assert link_key(make_runtime().settings) == DEV_LINK_KEY


def raw_get(base: str, target: str) -> tuple[int, bytes]:
    """A GET of ``target`` exactly as written (no client normalises ``..`` or decodes ``%2F``)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        conn.endheaders()
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_a_real_server_streams_valid_links_and_refuses_traversal(
    make_runtime: MakeRuntime, export_dir: Path, tmp_path: Path
) -> None:
    # Given ``worker-app serve`` with local exports, one finished export and a file next to EXPORT_DIR
    runtime = make_runtime(EXPORT_DIR=str(export_dir), EXPORT_LINK_SECRET=SECRET)
    stored = stored_export(export_dir)
    (tmp_path / "secret.csv").write_bytes(b"not for download")
    future = int(time.time()) + 600
    query = f"expires={future}&sig={link_signature(SECRET.encode(), stored.job_id, future)}"
    env = {"EXPORT_DIR": str(export_dir), "EXPORT_LINK_SECRET": SECRET}
    with serving(tmp_path / "serve.log", env) as base:
        # When its link is followed over HTTP, and raw traversal attempts are sent
        assert raw_get(base, f"/exports/{stored.job_id}?{query}") == (200, CSV)
        for target in ("/exports/..%2fsecret.csv", "/exports/%2e%2e%2fsecret.csv", "/exports/../secret.csv",
                       "/exports/%2e%2e/secret.csv", f"/exports/{stored.job_id}%2f..%2f..%2fsecret.csv",
                       "/exports//etc/passwd", "/exports/%2Fetc%2Fpasswd"):  # fmt: skip
            status, body = raw_get(base, f"{target}?{query}")
            # Then each is refused, and never answers with either file
            assert status in (403, 404), (target, status)
            assert body not in (CSV, b"not for download") and b"root:" not in body, target
        tampered = raw_get(base, f"/exports/{stored.job_id}?{query[:-1]}{'0' if query[-1] != '0' else '1'}")
        assert tampered[0] == 403
    assert runtime.settings.export_dir == export_dir
