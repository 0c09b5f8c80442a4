"""A Flask app for corral. Flask comes from Debian's python3-flask (there is no PyPI here):

    apt-get install python3-flask
    corral serve examples/flask --python /usr/bin/python3 --http 127.0.0.1:8000

`--python` points corral at the interpreter that has Flask (a venv's python works the same way).
"""
from flask import Flask, jsonify, request

app = Flask(__name__)
# corral's default WSGI_APP is wsgi:application
application = app


@app.route("/")
def index():
    return "<h1>Hello from Flask on wsgi-corral</h1><p>Try <a href='/api/echo?x=1'>/api/echo</a>.</p>"


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
