"""A web.py app for corral, in the shape of the classic IIS article's app
(`web.application(urls, globals()).wsgifunc()`), meant to be mounted at /api/: its routes are
written without the prefix and never see it, since corral gives web.py SCRIPT_NAME=/api and
PATH_INFO=/rest (web.ctx.homepath), and web.seeother()/web.url() put the prefix back. web.py
comes from Debian's python3-webpy:

    apt-get install python3-webpy
    corral serve examples/webpy --python /usr/bin/python3 --http 127.0.0.1:8000 --mount /api

Behind nginx, mount it with `fastcgi_split_path_info ^(/api)(/.*)$` (README); under IIS, make /api
an IIS application (its web.config is here).
"""
import hashlib
import json
import os
import tempfile

import web

HERE = os.path.dirname(os.path.abspath(__file__))
# Debug mode would turn errors into web.py's debug page and reload modules itself; corral reloads.
web.config.debug = False

urls = (
    "/", "Index",
    "/info", "Info",
    "/redirect", "Redirect",
    "/form", "Form",
    "/upload", "Upload",
    "/stream", "Stream",
    "/session", "Counter",
    "/boom", "Boom",
    "/static/(.+)", "Static",
)

app = web.application(urls, globals())
# Sessions on disk, so every corral worker process sees the same ones.
session = web.session.Session(
    app,
    web.session.DiskStore(os.path.join(tempfile.gettempdir(), "corral-webpy-sessions")),
    initializer={"visits": 0},
)
web.config.session_parameters["cookie_path"] = "/"


class Index:
    def GET(self):
        web.header("Content-Type", "text/html; charset=utf-8")
        return "<h1>Hello from web.py on wsgi-corral</h1><a href='%s'>info</a>" % web.url("/info")


class Info:
    def GET(self):
        """What the app sees of its place: routes never see the prefix, generated URLs carry it."""
        web.header("Content-Type", "application/json")
        return json.dumps({"script_name": web.ctx.homepath, "path_info": web.ctx.path, "url": web.url("/info")})


class Redirect:
    def GET(self):
        raise web.seeother("/")


class Form:
    def GET(self):
        return "<form method='post' action='%s'><input name='name'><button>Send</button></form>" % web.url("/form")

    def POST(self):
        web.header("Content-Type", "text/plain; charset=utf-8")
        return "Hello, %s!" % web.input().name


class Upload:
    def POST(self):
        f = web.input(file={}).file
        data = f.value
        web.header("Content-Type", "application/json")
        return json.dumps({"name": f.filename, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})


class Stream:
    def GET(self):
        web.header("Content-Type", "text/plain")
        n = int(web.input(n="5").n)
        for i in range(n):
            yield "chunk %d\n" % i


class Counter:
    def GET(self):
        session.visits += 1
        web.header("Content-Type", "text/plain")
        return "visits: %d" % session.visits


class Boom:
    def GET(self):
        raise RuntimeError("the web.py example's deliberate error")


class Static:
    """web.py's own server serves /static/; a WSGI host does not, so the app does (or nginx/IIS)."""

    def GET(self, name):
        root = os.path.join(HERE, "static")
        path = os.path.realpath(os.path.join(root, name))
        if not path.startswith(root + os.sep) or not os.path.isfile(path):
            raise web.notfound()
        web.header("Content-Type", "text/plain; charset=utf-8")
        with open(path, "rb") as f:
            return f.read()


application = app.wsgifunc()
