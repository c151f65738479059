"""Where data exports are kept and how their download links are signed (docs/exports.md).

Shared by the bulk domain's ``generate_data_export`` (writes), ``GET /exports/<job_id>`` on
``worker-app serve`` (reads, local storage only) and ``cleanup_expired_exports`` (deletes).

* **Layout**: one directory (local) or key prefix (S3) per job, holding one finished file:
  ``<EXPORT_DIR>/<job_id>/<file name>``, or ``<prefix>/<job_id>/<file name>`` in the bucket. The job
  id is a Dramatiq message id (a lowercase UUID, :data:`JOB_ID`); the file name is the export's
  (:data:`FILE_NAME`). Nothing else under EXPORT_DIR or the prefix is ever served or deleted.
* **Never half-written**: an export is written to ``<job dir>/.<file name>.<random>.part`` (mode
  0600), fsynced, then renamed over the final name (local) or uploaded — a multipart upload is
  invisible until it completes — and the temporary file removed (S3). A failed run removes its
  temporary file at once; a killed one leaves it to :meth:`LocalStorage.sweep`.
* **Links**: local files are served by ``worker-app serve`` at
  ``{EXPORT_PUBLIC_URL}/exports/<job_id>?expires=<unix s>&sig=<hex>``, ``sig`` the HMAC-SHA256 of
  ``<job_id>.<expires>`` keyed with EXPORT_LINK_SECRET (else API_TOKEN, else :data:`DEV_LINK_KEY`);
  S3 objects by a presigned GET URL that lasts as long as the export is kept (at most 7 days, SigV4's
  limit). Either stops working EXPORT_TTL_H after the export was finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar
from urllib.parse import urlencode, urlsplit

from worker_app.config import Settings
from worker_app.durable import fsync_dir
from worker_app.errors import PermanentError, UpstreamUnavailable

T = TypeVar("T")
#: A job id as Dramatiq makes message ids; the only job ids a link or a sweep ever accepts.
JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: A finished export's name, e.g. ``payments-2026-12-01_2026-12-07.csv``, ``users-all-2026-12-08.jsonl``.
FILE_NAME = re.compile(r"[a-z]{1,16}-[0-9a-z_-]{1,40}\.(?:csv|jsonl|json)")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "json": "application/json",
}
TEMP_SUFFIX = ".part"
#: The link key when neither EXPORT_LINK_SECRET nor API_TOKEN is set (``serve`` then only runs on
#: loopback: without API_TOKEN it refuses any other address).
DEV_LINK_KEY = b"cybervpn-development-export-links"
#: SigV4 presigned URLs last at most 7 days.
PRESIGN_MAX_S = 7 * 86_400
_SIG = re.compile(r"[0-9a-f]{64}")
_EXPIRES = re.compile(r"[0-9]{1,12}")


# -- links ----------------------------------------------------------------------------------------


def link_key(settings: Settings) -> bytes:
    """The HMAC key of download links: EXPORT_LINK_SECRET, else API_TOKEN, else :data:`DEV_LINK_KEY`."""
    secret = settings.export_link_secret or settings.api_token
    return secret.get_secret_value().encode() if secret is not None else DEV_LINK_KEY


def link_signature(key: bytes, job_id: str, expires: int) -> str:
    """Hex HMAC-SHA256 of ``<job_id>.<expires>``."""
    return hmac.new(key, f"{job_id}.{expires}".encode(), hashlib.sha256).hexdigest()


def signed_link(settings: Settings, job_id: str, expires: int) -> str:
    """The download link of a local export, valid until ``expires`` (unix seconds)."""
    query = urlencode({"expires": expires, "sig": link_signature(link_key(settings), job_id, expires)})
    return f"{settings.export_public_url}/exports/{job_id}?{query}"


def link_refusal(key: bytes, job_id: str, expires: str, sig: str, now: float) -> str | None:
    """Why a link's ``expires`` and ``sig`` do not open ``job_id`` now (``None``: they do). Compared
    in constant time; every part must have its exact shape first."""
    if not JOB_ID.fullmatch(job_id) or not _EXPIRES.fullmatch(expires) or not _SIG.fullmatch(sig):
        return "malformed link"
    if not hmac.compare_digest(link_signature(key, job_id, int(expires)), sig):
        return "bad link signature"
    if int(expires) <= now:
        return f"link expired at {datetime.fromtimestamp(int(expires), UTC):%Y-%m-%d %H:%M:%S} UTC"
    return None


# -- storage --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """A finished export: where (``location``), its size, and when it was finished (unix s)."""

    storage: str
    job_id: str
    file_name: str
    location: str
    size: int
    finished_at: float


@dataclass
class Swept:
    """What a sweep deleted: finished exports past their TTL, and leftovers of killed runs
    (temporary files, empty job directories, incomplete multipart uploads)."""

    expired: int = 0
    leftovers: int = 0

    def counts(self) -> dict[str, int]:
        return {"expired": self.expired, "leftovers": self.leftovers}


class Storage(Protocol):
    """Local directory or S3 bucket; see the module docstring."""

    kind: str

    def save(self, job_id: str, file_name: str, write: Callable[[BinaryIO], T]) -> tuple[T, Stored]: ...

    def link(self, settings: Settings, stored: Stored, expires: int, now: float) -> str: ...

    def sweep(self, now: float, ttl_s: float, leftover_s: float) -> Swept: ...


def storage_for(settings: Settings) -> Storage:
    """S3 when EXPORT_S3_URL is set (staging in EXPORT_DIR), else the local EXPORT_DIR."""
    local = LocalStorage(settings.export_dir)
    return S3Storage(settings.export_s3_url, local) if settings.export_s3_url else local


def _job_dir(root: Path, job_id: str) -> Path:
    if not JOB_ID.fullmatch(job_id):
        raise PermanentError(f"export job id {job_id!r} is not a message id")
    return root / job_id


def _older(path_stat: os.stat_result, now: float, age_s: float) -> bool:
    return path_stat.st_mtime + age_s <= now


class LocalStorage:
    """Exports in ``root`` (EXPORT_DIR): directories 0700, files 0600."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @contextmanager
    def temporary(self, job_id: str, file_name: str) -> Iterator[tuple[BinaryIO, Path]]:
        """A new temporary file in the job's directory, removed again if the block raises."""
        if not FILE_NAME.fullmatch(file_name):
            raise PermanentError(f"export file name {file_name!r} is not one an export has")
        job_dir = _job_dir(self.root, job_id)
        job_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{file_name}.", suffix=TEMP_SUFFIX, dir=job_dir)
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as file:
                yield file, temp
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def save(self, job_id: str, file_name: str, write: Callable[[BinaryIO], T]) -> tuple[T, Stored]:
        """``write`` the export into a temporary file, then rename it over ``<job_id>/<file_name>``
        (another finished file of the job, from an earlier run, is removed)."""
        with self.temporary(job_id, file_name) as (file, temp):
            out = write(file)
            file.flush()
            os.fsync(file.fileno())
            final = temp.with_name(file_name)
            os.replace(temp, final)
        fsync_dir(final.parent)
        with os.scandir(final.parent) as entries:
            earlier = [e.path for e in entries if e.name != file_name and FILE_NAME.fullmatch(e.name)]
        for path in earlier:
            _unlink(path)
        st = final.stat()
        return out, Stored(self.kind, job_id, file_name, str(final), st.st_size, st.st_mtime)

    def link(self, settings: Settings, stored: Stored, expires: int, now: float) -> str:
        return signed_link(settings, stored.job_id, expires)

    def open_export(self, job_id: str) -> tuple[BinaryIO, str] | None:
        """The finished export of ``job_id`` (a validated job id) opened for reading, and its name;
        ``None`` when there is none. Symbolic links are never followed."""
        try:
            with os.scandir(_job_dir(self.root, job_id)) as entries:
                names = sorted(e.name for e in entries if FILE_NAME.fullmatch(e.name))
        except FileNotFoundError:
            return None
        for name in names:
            try:
                fd = os.open(self.root / job_id / name, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:  # gone meanwhile, or a symbolic link
                continue
            if stat.S_ISREG(os.fstat(fd).st_mode):
                return os.fdopen(fd, "rb"), name
            os.close(fd)
        return None

    def sweep(self, now: float, ttl_s: float, leftover_s: float) -> Swept:
        """Delete exports finished ``ttl_s`` ago or more, and temporary files and empty job
        directories older than ``leftover_s`` (runs that were killed)."""
        swept = Swept()
        if not self.root.is_dir():
            return swept
        with os.scandir(self.root) as entries:
            jobs = [
                Path(e.path) for e in entries if JOB_ID.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
            ]
        for job_dir in jobs:
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile (another sweep)
                self._sweep_job(job_dir, now, ttl_s, leftover_s, swept)
        return swept

    def _sweep_job(self, job_dir: Path, now: float, ttl_s: float, leftover_s: float, swept: Swept) -> None:
        before = (swept.expired, swept.leftovers)
        with os.scandir(job_dir) as entries:
            files = [e for e in entries if e.is_file(follow_symlinks=False)]
        for entry in files:
            temp = entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX)
            try:
                if temp and _older(entry.stat(), now, leftover_s):
                    swept.leftovers += _unlink(entry.path)
                elif FILE_NAME.fullmatch(entry.name) and _older(entry.stat(), now, ttl_s):
                    swept.expired += _unlink(entry.path)
            except FileNotFoundError:  # renamed or removed meanwhile (a run finishing, another sweep)
                continue
        # an empty directory younger than that may be a run's that is about to create its file
        if (swept.expired, swept.leftovers) != before or _older(job_dir.stat(), now, leftover_s):
            with contextlib.suppress(OSError):  # not empty: something else is (still) in it
                job_dir.rmdir()


def _unlink(path: str) -> int:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return 1


@dataclass(frozen=True)
class S3Location:
    """EXPORT_S3_URL parsed: ``s3://bucket/prefix`` (AWS) or ``http(s)://endpoint/bucket/prefix``."""

    endpoint: str | None
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme == "s3":
            return cls(None, parts.netloc, parts.path.strip("/"))
        bucket, _, prefix = parts.path.strip("/").partition("/")
        return cls(f"{parts.scheme}://{parts.netloc}", bucket, prefix.strip("/"))

    def key(self, job_id: str, file_name: str) -> str:
        return f"{self.prefix}/{job_id}/{file_name}" if self.prefix else f"{job_id}/{file_name}"

    @property
    def root(self) -> str:
        """The key prefix every export's key starts with."""
        return f"{self.prefix}/" if self.prefix else ""


class S3Storage:
    """Exports in an S3-compatible bucket (boto3; credentials from its usual environment variables,
    files or instance roles), staged in ``staging`` (EXPORT_DIR) while they are written."""

    kind = "s3"

    def __init__(self, url: str, staging: LocalStorage, client: Any = None) -> None:
        self.where = S3Location.parse(url)
        self.staging = staging
        self._client = client

    @property
    def client(self) -> Any:
        """The boto3 S3 client, made on first use (path-style addressing for a custom endpoint)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            style = {"addressing_style": "path"} if self.where.endpoint else {}
            config = Config(s3=style, signature_version="s3v4", connect_timeout=10, read_timeout=60,
                            retries={"max_attempts": 5, "mode": "standard"})  # fmt: skip
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.where.endpoint, config=config
            )
        return self._client

    def save(self, job_id: str, file_name: str, write: Callable[[BinaryIO], T]) -> tuple[T, Stored]:
        """``write`` the export into a staged file, then upload it (visible only once complete)."""
        key = self.where.key(job_id, file_name)
        with self.staging.temporary(job_id, file_name) as (file, temp):
            out = write(file)
            file.flush()
            size = file.tell()
            extra = {"ContentType": CONTENT_TYPES[file_name.rsplit(".", 1)[1]],
                     "ContentDisposition": f'attachment; filename="{file_name}"',
                     "Metadata": {"job-id": job_id}}  # fmt: skip
            with _s3_errors(f"upload of s3://{self.where.bucket}/{key}"):
                self.client.upload_file(
                    str(temp), self.where.bucket, key, ExtraArgs=extra, Config=_transfer()
                )
            temp.unlink()
        location = f"s3://{self.where.bucket}/{key}"
        return out, Stored(self.kind, job_id, file_name, location, size, time.time())

    def link(self, settings: Settings, stored: Stored, expires: int, now: float) -> str:
        """A presigned GET, valid for the export's remaining time (at most 7 days)."""
        lasts = max(1, min(PRESIGN_MAX_S, int(expires - now)))
        params = {"Bucket": self.where.bucket, "Key": self.where.key(stored.job_id, stored.file_name)}
        with _s3_errors("presigning a download link"):
            return str(self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=lasts))

    def sweep(self, now: float, ttl_s: float, leftover_s: float) -> Swept:
        """Delete objects older than ``ttl_s``, abort multipart uploads (and staged files) older
        than ``leftover_s``."""
        swept = self.staging.sweep(now, ttl_s, leftover_s)
        with _s3_errors(f"sweeping s3://{self.where.bucket}/{self.where.root}"):
            expired = [key for key, modified in self._objects() if modified + ttl_s <= now]
            for start in range(0, len(expired), 1000):
                chunk = [{"Key": key} for key in expired[start : start + 1000]]
                self.client.delete_objects(Bucket=self.where.bucket, Delete={"Objects": chunk, "Quiet": True})
            swept.expired += len(expired)
            swept.leftovers += self._abort_uploads(now, leftover_s)
        return swept

    def _objects(self) -> Iterator[tuple[str, float]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.where.bucket, Prefix=self.where.root
        )
        for page in pages:
            for item in page.get("Contents", ()):
                if self._ours(item["Key"]):
                    yield item["Key"], item["LastModified"].timestamp()

    def _ours(self, key: str) -> bool:
        job_id, slash, name = key.removeprefix(self.where.root).partition("/")
        return bool(slash) and JOB_ID.fullmatch(job_id) is not None and FILE_NAME.fullmatch(name) is not None

    def _abort_uploads(self, now: float, leftover_s: float) -> int:
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.where.bucket, Prefix=self.where.root
        )
        aborted = 0
        for page in pages:
            for upload in page.get("Uploads", ()):
                if self._ours(upload["Key"]) and upload["Initiated"].timestamp() + leftover_s <= now:
                    self.client.abort_multipart_upload(
                        Bucket=self.where.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted += 1
        return aborted


def _transfer() -> Any:
    """Multipart uploads of 8 MiB parts, 4 at a time: about 32 MiB in flight, whatever the size."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=8 * 1024**2, multipart_chunksize=8 * 1024**2, max_concurrency=4)


@contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    """boto3's errors as ours (:func:`_classified`)."""
    try:
        yield
    except Exception as e:
        ours = _classified(e, f"S3 {what}")
        if ours is None:
            raise
        raise ours from e


def _classified(error: BaseException, what: str) -> Exception | None:
    """A 4xx (no such bucket, access denied) or missing credentials is permanent; anything else from
    botocore (5xx, connection, timeout) is the store being unavailable; ``None``: not boto's."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(error, S3UploadFailedError) and error.__context__ is not None:
        error = error.__context__  # upload_file wraps the ClientError it got
    if isinstance(error, ClientError):
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = f"{what}: {status} {error.response.get('Error', {}).get('Code', '?')}"
        if 400 <= status < 500:
            return PermanentError(f"{message} (check EXPORT_S3_URL and the S3 credentials)")
        return UpstreamUnavailable(message)
    if isinstance(error, NoCredentialsError):
        return PermanentError(f"{what}: no S3 credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...)")
    if isinstance(error, BotoCoreError | S3UploadFailedError):
        return UpstreamUnavailable(f"{what}: {type(error).__name__}: {error}")
    return None
