"""A Falcon app for corral. Falcon comes from Debian's python3-falcon:

    apt-get install python3-falcon
    corral serve examples/falcon --python /usr/bin/python3 --http 127.0.0.1:8000

Falcon has no URL builder: links and redirects are built from req.root_path (SCRIPT_NAME), so under
a prefix (nginx, an IIS application, `--mount /app`) they carry it; routes never see it. Falcon
has no sessions either: the counter is a plain cookie.
"""
import hashlib
import os

import falcon

HERE = os.path.dirname(os.path.abspath(__file__))


class Index:
    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_HTML
        resp.text = "<h1>Hello from Falcon on wsgi-corral</h1><a href='%s/info'>info</a>" % req.root_path


class Info:
    def on_get(self, req, resp):
        """What the app sees of its place: routes never see the prefix, generated URLs carry it."""
        resp.media = {"script_name": req.root_path, "path_info": req.path, "url": req.root_path + "/info"}


class Redirect:
    def on_get(self, req, resp):
        raise falcon.HTTPFound(req.root_path + "/")


class Form:
    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_HTML
        resp.text = "<form method='post' action='%s/form'><input name='name'><button>Send</button></form>" % req.root_path

    def on_post(self, req, resp):
        form = req.get_media()  # application/x-www-form-urlencoded
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "Hello, %s!" % form["name"]


class Upload:
    def on_post(self, req, resp):
        for part in req.get_media():  # multipart/form-data, streamed part by part
            if part.name == "file":
                data = part.stream.read()
                resp.media = {"name": part.filename, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                return
        raise falcon.HTTPBadRequest(title="no file part")


class Stream:
    def on_get(self, req, resp):
        n = req.get_param_as_int("n", default=5)
        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = (("chunk %d\n" % i).encode() for i in range(n))


class Counter:
    def on_get(self, req, resp):
        visits = int((req.get_cookie_values("visits") or ["0"])[0]) + 1
        # secure=False: the example also runs over plain HTTP, where browsers drop Secure cookies.
        resp.set_cookie("visits", str(visits), path=req.root_path or "/", secure=False)
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "visits: %d" % visits


class Boom:
    def on_get(self, req, resp):
        raise RuntimeError("the falcon example's deliberate error")


app = falcon.App()
app.req_options.auto_parse_form_urlencoded = False
app.add_route("/", Index())
app.add_route("/info", Info())
app.add_route("/redirect", Redirect())
app.add_route("/form", Form())
app.add_route("/upload", Upload())
app.add_route("/stream", Stream())
app.add_route("/session", Counter())
app.add_route("/boom", Boom())
app.add_static_route("/static", os.path.join(HERE, "static"))

application = app
