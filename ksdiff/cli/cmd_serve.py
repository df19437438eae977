"""ksdiff serve: the web page."""

from __future__ import annotations

import argparse

NAME = "serve"
HELP = "a web page: upload or record speech, get the animated face video and motion files"
ORDER = 90
DESCRIPTION = """\
A web page on http://HOST:PORT/: upload or record speech, get the animated face video and motion files.

Limits: an upload over --max-upload-mb is refused (413) while it streams in; audio longer than --max-seconds is
refused (400) as soon as decoding passes the limit; at most --max-jobs requests run at once and any other is
answered 503 (Retry-After) at once, without a queue. Uploads are deleted after each job, results are kept for the
--keep-results newest jobs, and the temporary work folder is removed when the server stops. There is no
authentication: keep the default --host 127.0.0.1 unless everyone who can reach the address may use it.
The API (POST /api/animate, multipart form) is described at /docs and /openapi.json only with --api-docs."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ksdiff.serve import KEEP_RESULTS, MAX_JOBS, MAX_SECONDS, MAX_UPLOAD_MB

    p.description = DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--checkpoint", default=None, help="model (default: the shipped default model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--steps", type=int, default=None, help="default denoising steps shown on the page")
    p.add_argument("--max-seconds", type=float, default=MAX_SECONDS,
                   help=f"longest audio accepted, in seconds (default {MAX_SECONDS:g})")
    p.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB,
                   help=f"largest upload accepted, in MB (default {MAX_UPLOAD_MB:g})")
    p.add_argument("--max-jobs", type=int, default=MAX_JOBS,
                   help=f"requests handled at once; others get 503 (default {MAX_JOBS})")
    p.add_argument("--keep-results", type=int, default=KEEP_RESULTS,
                   help=f"finished jobs whose files stay downloadable (default {KEEP_RESULTS})")
    p.add_argument("--api-docs", action="store_true", help="serve the API description at /docs and /openapi.json")


def run(args: argparse.Namespace) -> int:
    from ksdiff.serve import Limits, serve

    limits = Limits(max_seconds=args.max_seconds, max_upload_mb=args.max_upload_mb, max_jobs=args.max_jobs,
                    keep_results=args.keep_results)
    serve(args.checkpoint, host=args.host, port=args.port, steps=args.steps, limits=limits, api_docs=args.api_docs)
    return 0
