"""``GET /exports/<job_id>?expires=<unix s>&sig=<hex>``: a data export's download (local storage).

The link is its own credential (no bearer token): its signature (HMAC-SHA256 of ``<job_id>.<expires>``,
:mod:`worker_app.exports`) is checked in constant time, and it works until ``expires``. In order,
before the filesystem is touched at all:

1. with S3 storage (EXPORT_S3_URL) the route serves nothing: 404 (the links are presigned S3 URLs);
2. ``job_id`` must be a job id (a lowercase UUID): otherwise 404 — ``../``, encoded slashes, absolute
   paths and anything else never reach a path;
3. exactly one ``expires`` (digits) and one ``sig`` (64 hex digits) that sign ``job_id``: otherwise
   403; a valid signature whose time has passed: 403 too.

Only then is ``<EXPORT_DIR>/<job_id>/`` read: its finished export (never a temporary file, never a
symbolic link) is streamed as an attachment named after the export
(``payments-2026-12-01_2026-12-07.csv``), with its length and ``Range`` support (a resumed
download); 404 when it is gone (cleaned up, or never finished). Errors are JSON ``{"error": ...}``.
The route is not in the OpenAPI document (its clients are browsers).
"""

from __future__ import annotations

import logging
import os
import time

from flask import Flask, Response, jsonify, request, send_file

from worker_app.exports import CONTENT_TYPES, JOB_ID, LocalStorage, link_key, link_refusal
from worker_app.runtime import Runtime

PATH = "/exports/<job_id>"
log = logging.getLogger(__name__)


def add_download_route(app: Flask, runtime: Runtime) -> None:
    """Register ``GET /exports/<job_id>`` on ``app``."""
    settings = runtime.settings
    key = link_key(settings)
    storage = None if settings.export_s3_url else LocalStorage(settings.export_dir)

    def download(job_id: str) -> Response | tuple[Response, int]:
        if storage is None:
            return _refused(404, "no such export here: exports are kept in object storage (EXPORT_S3_URL)")
        if not JOB_ID.fullmatch(job_id):
            return _refused(404, "no such export")
        expires, sig = request.args.getlist("expires"), request.args.getlist("sig")
        if len(expires) != 1 or len(sig) != 1:
            return _refused(403, "the link needs one expires and one sig parameter")
        refusal = link_refusal(key, job_id, expires[0], sig[0], time.time())
        if refusal is not None:
            log.info("export download %s refused: %s", job_id, refusal)
            return _refused(403, refusal)
        found = storage.open_export(job_id)
        if found is None:
            return _refused(404, "no such export (it expired and was deleted, or never finished)")
        file, name = found
        size = os.fstat(file.fileno()).st_size
        mimetype = CONTENT_TYPES[name.rsplit(".", 1)[1]].split(";")[0]  # werkzeug adds text's charset
        response = send_file(file, mimetype=mimetype, as_attachment=True, download_name=name, max_age=0,
                             conditional=False, etag=False)  # fmt: skip
        response.content_length = size
        response.make_conditional(request, accept_ranges=True, complete_length=size)  # a resumed download
        response.headers["Cache-Control"] = "private, no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    app.add_url_rule(PATH, "export_download", download, methods=["GET"])


def _refused(status: int, error: str) -> tuple[Response, int]:
    response = jsonify(error=error)
    response.headers["Cache-Control"] = "no-store"
    return response, status
