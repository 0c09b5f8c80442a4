"""A Flask app for corral: pages with url_for, a JSON API, a form POST, a file upload, a streamed
response and a cookie session. Flask comes from Debian's python3-flask (there is no PyPI here):

    apt-get install python3-flask
    corral serve examples/flask --python /usr/bin/python3 --http 127.0.0.1:8000

`--python` (or CORRAL_PYTHON) points corral at the interpreter that has Flask; a venv's python works
the same way. The folder's corral.json holds the other settings. Under a prefix (nginx
`fastcgi_split_path_info`, an IIS application, `--mount /app`) every URL below carries it.
"""
import hashlib
import os

from flask import Flask, abort, jsonify, redirect, request, Response, session, url_for

app = Flask(__name__)
# Signs the session cookie. A real site reads it from its environment (web.config appSettings
# reach os.environ); the fallback keeps the example runnable as it is.
app.secret_key = os.environ.get("FLASK_SECRET_KEY", "corral-example-not-secret")
# corral's default WSGI_APP is wsgi:application
application = app


@app.route("/")
def index():
    links = "".join(
        f"<li><a href='{url_for(name, **args)}'>{label}</a></li>"
        for name, args, label in [
            ("echo", {"x": 1}, "JSON echo"),
            ("form", {}, "a form"),
            ("stream", {"n": 3}, "a streamed response"),
            ("counter", {}, "a session counter"),
            ("static", {"filename": "hello.txt"}, "a static file"),
        ]
    )
    return f"<h1>Hello from Flask on wsgi-corral</h1><ul>{links}</ul>"


@app.route("/info")
def info():
    """What the app sees of its place: routes never see the prefix, generated URLs carry it."""
    return jsonify(
        script_name=request.environ.get("SCRIPT_NAME", ""),
        path_info=request.environ.get("PATH_INFO", ""),
        url=url_for("info"),
    )


@app.route("/redirect")
def to_index():
    return redirect(url_for("index"))


@app.route("/api/echo", methods=["GET", "POST"])
def echo():
    return jsonify(
        method=request.method,
        path=request.path,
        script_root=request.script_root,
        args=request.args.to_dict(),
        body_length=len(request.get_data()),
    )


@app.route("/api/cookies")
def cookies():
    resp = app.make_response("two cookies")
    resp.set_cookie("a", "1")
    resp.set_cookie("b", "2")
    return resp


@app.route("/form", methods=["GET", "POST"])
def form():
    if request.method == "POST":
        return f"Hello, {request.form['name']}!"
    return f"<form method='post' action='{url_for('form')}'><input name='name'><button>Send</button></form>"


@app.route("/upload", methods=["POST"])
def upload():
    f = request.files["file"]
    data = f.read()
    return jsonify(name=f.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest())


@app.route("/stream")
def stream():
    n = request.args.get("n", 5, type=int)
    return Response((f"chunk {i}\n" for i in range(n)), mimetype="text/plain")


@app.route("/session")
def counter():
    session["visits"] = session.get("visits", 0) + 1
    return f"visits: {session['visits']}"


@app.route("/boom")
def boom():
    raise RuntimeError("the flask example's deliberate error")


@app.route("/teapot")
def teapot():
    abort(418)
