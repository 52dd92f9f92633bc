"""Flask (WSGI)."""

import flask

from . import STREAM_CHUNKS, upload_summary


def make_app() -> flask.Flask:
    app = flask.Flask(__name__)

    @app.get("/hello/<name>")
    def hello(name):
        greeting = flask.request.args.get("greeting", "Hello")
        return flask.Response(f"{greeting}, {name}!", mimetype="text/plain")

    @app.post("/json")
    def json_echo():
        return flask.jsonify(received=flask.request.get_json())

    @app.post("/form")
    def form():
        return flask.jsonify(flask.request.form.to_dict())

    @app.post("/upload")
    def upload():
        file = flask.request.files["file"]
        return upload_summary(file.filename, file.read(), flask.request.form["note"])

    @app.get("/cookies/set")
    def set_cookie():
        response = flask.make_response("set")
        response.set_cookie("flavour", "oat")
        return response

    @app.get("/cookies/get")
    def get_cookie():
        return {"flavour": flask.request.cookies.get("flavour")}

    @app.get("/redirect")
    def redirect():
        return flask.redirect(flask.url_for("hello", name="redirected"))

    @app.get("/stream")
    def stream():
        return flask.Response(iter(STREAM_CHUNKS), mimetype="text/plain")

    @app.get("/error")
    def error():
        raise RuntimeError("view failed")

    return app
