"""A Bottle app for corral. Bottle comes from Debian's python3-bottle:

    apt-get install python3-bottle
    corral serve examples/bottle --python /usr/bin/python3 --http 127.0.0.1:8000

app.get_url() and redirect() take SCRIPT_NAME into account, so under a prefix (nginx, an IIS
application, `--mount /app`) generated URLs carry it while routes are written without it.
"""
import hashlib
import json
import os

import bottle
from bottle import redirect, request, response

HERE = os.path.dirname(os.path.abspath(__file__))
# Signs the visits cookie; a real site reads it from its environment.
SECRET = os.environ.get("BOTTLE_SECRET", "corral-example-not-secret")

app = bottle.Bottle()


@app.route("/", name="index")
def index():
    return "<h1>Hello from Bottle on wsgi-corral</h1><a href='%s'>info</a>" % app.get_url("info")


@app.route("/info", name="info")
def info():
    """What the app sees of its place: routes never see the prefix, generated URLs carry it."""
    response.content_type = "application/json"
    return json.dumps({"script_name": request.script_name.rstrip("/"), "path_info": request.path, "url": app.get_url("info")})


@app.route("/redirect")
def to_index():
    redirect(app.get_url("index"))


@app.route("/form", method=["GET", "POST"], name="form")
def form():
    if request.method == "POST":
        response.content_type = "text/plain; charset=utf-8"
        return "Hello, %s!" % request.forms.getunicode("name")
    return "<form method='post' action='%s'><input name='name'><button>Send</button></form>" % app.get_url("form")


@app.post("/upload")
def upload():
    f = request.files.get("file")
    data = f.file.read()
    return {"name": f.raw_filename, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@app.route("/stream")
def stream():
    response.content_type = "text/plain"
    n = int(request.query.get("n", "5"))
    return ("chunk %d\n" % i for i in range(n))


@app.route("/session")
def counter():
    visits = (request.get_cookie("visits", secret=SECRET) or 0) + 1
    response.set_cookie("visits", visits, secret=SECRET, path="/", httponly=True)
    response.content_type = "text/plain"
    return "visits: %d" % visits


@app.route("/boom")
def boom():
    raise RuntimeError("the bottle example's deliberate error")


@app.route("/static/<name:path>")
def static(name):
    return bottle.static_file(name, root=os.path.join(HERE, "static"))


application = app
