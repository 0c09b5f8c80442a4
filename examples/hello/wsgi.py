"""The smallest WSGI app: plain standard library, no framework.

Run it with `corral serve examples/hello --http 127.0.0.1:8000` (or `npm start`) and open
http://127.0.0.1:8000/.  `wsgi:application` is corral's default WSGI_APP, so no flag is needed.
"""
import html
import os
import sys
import threading

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Hello from wsgi-corral</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;line-height:1.5}}
code{{background:#f3f3f3;padding:0 .2em}}</style></head>
<body><h1>Hello from wsgi-corral</h1>
<p>This page was made by a Python WSGI app (<code>examples/hello/wsgi.py</code>) running in a
corral worker process.</p>
<table>
<tr><td>Path</td><td><code>{path}</code></td></tr>
<tr><td>Method</td><td><code>{method}</code></td></tr>
<tr><td>Worker pid</td><td><code>{pid}</code></td></tr>
<tr><td>Thread</td><td><code>{thread}</code></td></tr>
<tr><td>Python</td><td><code>{python}</code></td></tr>
<tr><td>Server</td><td><code>{server}</code></td></tr>
</table>
</body></html>
"""


def application(environ, start_response):
    body = PAGE.format(
        path=html.escape(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")),
        method=html.escape(environ["REQUEST_METHOD"]),
        pid=os.getpid(),
        thread=html.escape(threading.current_thread().name),
        python=html.escape(sys.version.split()[0]),
        server=html.escape(environ.get("SERVER_SOFTWARE", "")),
    ).encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
