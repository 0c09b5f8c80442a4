"""A CherryPy app for corral, as a WSGI application (not CherryPy's own server). CherryPy comes
from Debian's python3-cherrypy3:

    apt-get install python3-cherrypy3
    corral serve examples/cherrypy --python /usr/bin/python3 --http 127.0.0.1:8000

The app is a cherrypy.Application with script_name=None, which reads SCRIPT_NAME per request: under
a prefix (nginx, an IIS application, `--mount /app`) cherrypy.url() carries it and the handlers
never see it. (Mounting it in cherrypy.tree at "" instead would join SCRIPT_NAME back onto the path
and the handlers would see the prefix; cherrypy.tree.mount(Root(), "/app") works for one fixed
prefix.)
"""
import hashlib
import json
import os
import tempfile

import cherrypy

HERE = os.path.dirname(os.path.abspath(__file__))

# "embedded": no autoreload (corral reloads), no signal handlers, no console logging.
cherrypy.config.update({"environment": "embedded"})


class Root:
    @cherrypy.expose
    def index(self):
        return "<h1>Hello from CherryPy on wsgi-corral</h1><a href='%s'>info</a>" % cherrypy.url("/info")

    @cherrypy.expose
    def info(self):
        """What the app sees of its place: routes never see the prefix, generated URLs carry it."""
        cherrypy.response.headers["Content-Type"] = "application/json"
        req = cherrypy.request
        return json.dumps({"script_name": req.script_name, "path_info": req.path_info, "url": cherrypy.url("/info", relative="server")}).encode()

    @cherrypy.expose
    def redirect(self):
        raise cherrypy.HTTPRedirect(cherrypy.url("/"))

    @cherrypy.expose
    def form(self, name=None):
        if cherrypy.request.method == "POST":
            cherrypy.response.headers["Content-Type"] = "text/plain; charset=utf-8"
            return "Hello, %s!" % name
        return "<form method='post' action='%s'><input name='name'><button>Send</button></form>" % cherrypy.url("/form")

    @cherrypy.expose
    @cherrypy.tools.allow(methods=["POST"])
    def upload(self, file):
        data = file.file.read()
        cherrypy.response.headers["Content-Type"] = "application/json"
        return json.dumps({"name": file.filename, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}).encode()

    @cherrypy.expose
    @cherrypy.config(**{"response.stream": True})
    def stream(self, n="5"):
        cherrypy.response.headers["Content-Type"] = "text/plain"
        return ("chunk %d\n" % i for i in range(int(n)))

    @cherrypy.expose
    def session(self):
        cherrypy.session["visits"] = cherrypy.session.get("visits", 0) + 1
        cherrypy.response.headers["Content-Type"] = "text/plain"
        return "visits: %d" % cherrypy.session["visits"]

    @cherrypy.expose
    def boom(self):
        raise RuntimeError("the cherrypy example's deliberate error")


SESSIONS = os.path.join(tempfile.gettempdir(), "corral-cherrypy-sessions")
os.makedirs(SESSIONS, exist_ok=True)
CONFIG = {
    "/": {
        # Files, not memory: every corral worker process sees the same sessions.
        "tools.sessions.on": True,
        "tools.sessions.storage_class": cherrypy.lib.sessions.FileSession,
        "tools.sessions.storage_path": SESSIONS,
    },
    "/static": {
        "tools.sessions.on": False,
        "tools.staticdir.on": True,
        "tools.staticdir.dir": os.path.join(HERE, "static"),
    },
}

application = cherrypy.Application(Root(), script_name=None, config=CONFIG)
