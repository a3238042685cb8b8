"""
``deepacc review CASE_DIR``: the review page of a case, served by Flask on this machine. The
page (``static/``: plain HTML, CSS and JavaScript, no build step) talks to a JSON API:

    GET  /api/case                          case summary and one line per cell
    GET  /api/classes                       the 24 classes, their Denver groups and colours
    GET  /api/cells/<id>                    the cell's record (chromosomes, call, flags, version)
    GET  /api/cells/<id>/image.png          its metaphase
    GET  /api/cells/<id>/karyogram.png      the karyogram of its current chromosomes
    GET  /api/cells/<id>/karyogram.json     where that karyogram puts each chromosome and slot
    POST /api/cells/<id>/edit               one change (:meth:`.store.CaseReview.edit`)
    GET  /api/export/coco                   the reviewed cells as COCO json (a download)
    GET  /api/cells/<id>/report.pdf|.png    the cell's report to sign (:mod:`.report`, a download)
    GET  /api/case/report.pdf|.png          the case's report (a download)

Bad requests get a 4xx with {"error": message} and change nothing. The server reads and
writes only the case's own files (a cell is found by its id among the records the folder
held at start, never by a path from the request) and the cell images those records name.
"""

import json
import os
import threading
from contextlib import contextmanager
from io import BytesIO
from typing import Iterator

from flask import Flask, Response, jsonify, request, send_file, send_from_directory
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

from ...classes import CLASS_NAMES, denver_group_of
from ...engine.files import png_bytes
from ...visualize import GROUP_COLORS
from .report import case_report, cell_report, report_name
from .store import CaseReview, ReviewError

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
MAX_BODY_BYTES = 64 * 1024  # a change is a few hundred bytes
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def create_app(case_dir: str, trusted_hosts=LOCAL_HOSTS) -> Flask:
    """
    Args:
        trusted_hosts: the host names a request may be addressed to (a page elsewhere cannot
            reach a local server through a name of its own); None: any.
    """
    review = CaseReview(case_dir)
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["TRUSTED_HOSTS"] = list(trusted_hosts) if trusted_hosts else None
    app.config["review"] = review

    @app.errorhandler(ReviewError)
    def review_error(e):
        return jsonify(error=str(e)), e.status

    @app.errorhandler(HTTPException)
    def http_error(e):
        return jsonify(error=f"{e.name}: {e.description}"), e.code

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.get("/static/<path:name>")
    def static_file(name):
        return send_from_directory(STATIC, name)  # 404 for a path that leaves the folder

    _add_case_routes(app, review)
    _add_download_routes(app, review)
    return app


def _add_case_routes(app: Flask, review: CaseReview):
    """The case's and its cells' JSON and pictures, and the changes to a cell."""

    @app.get("/api/case")
    def case():
        review.refresh()
        return jsonify(review.case_view())

    @app.get("/api/classes")
    def classes():
        return jsonify(
            [
                {"name": n, "group": denver_group_of(k), "color": GROUP_COLORS[denver_group_of(k)]}
                for k, n in enumerate(CLASS_NAMES)
            ]
        )

    @app.get("/api/cells/<cid>")
    def cell(cid):
        review.refresh()
        return jsonify(review.cell(cid))

    @app.get("/api/cells/<cid>/image.png")
    def image(cid):
        return _png(review.image(cid))

    @app.get("/api/cells/<cid>/karyogram.png")
    def karyogram(cid):
        return _png(review.karyogram(cid))

    @app.get("/api/cells/<cid>/karyogram.json")
    def karyogram_layout(cid):
        return jsonify(review.karyogram_layout(cid))

    @app.post("/api/cells/<cid>/edit")
    def edit(cid):
        try:
            change = json.loads(request.get_data())
        except (ValueError, RecursionError):
            raise ReviewError(400, "the body is not JSON") from None
        return jsonify(review.edit(cid, change))


def _add_download_routes(app: Flask, review: CaseReview):
    """The files a person takes away: the reviewed cells' COCO json and the reports."""

    @app.get("/api/export/coco")
    def export_coco():
        response = jsonify(review.coco())
        response.headers["Content-Disposition"] = "attachment; filename=reviewed_coco.json"
        return response

    def report_download(data: bytes, name: str) -> Response:
        response = send_file(BytesIO(data), as_attachment=True, download_name=name)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/api/cells/<cid>/report.<fmt>")
    def cell_report_file(cid, fmt):
        review.refresh()
        return report_download(cell_report(review, cid, fmt), report_name(cid, fmt))

    @app.get("/api/case/report.<fmt>")
    def case_report_file(fmt):
        review.refresh()
        return report_download(case_report(review, fmt), report_name(None, fmt))


def _png(picture) -> Response:
    return Response(png_bytes(picture), mimetype="image/png", headers={"Cache-Control": "no-store"})


@contextmanager
def serving(case_dir: str, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """The review server of ``case_dir`` on a thread (werkzeug's threaded server: a lab's
    few pages; port 0: any free one); yields its address, stops on leaving."""
    app = create_app(case_dir, LOCAL_HOSTS if host in LOCAL_HOSTS else None)
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def serve(case_dir: str, host: str = "127.0.0.1", port: int = 8000):
    """Serve the review page until interrupted (127.0.0.1 keeps it on this machine)."""
    with serving(case_dir, host, port) as address:
        print(f"reviewing {os.path.abspath(case_dir)} at {address}/ (Ctrl-C stops)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
