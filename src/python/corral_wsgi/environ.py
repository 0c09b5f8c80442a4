"""corral worker: the PEP 3333 environ of a request, from its FastCGI params.

Fronts get corners wrong (IIS's whole-URL PATH_INFO, nginx's empty CONTENT_LENGTH); corral's own
params (a site's settings, the relay's pairing token) never reach the app.
"""
import sys
from urllib.parse import unquote_to_bytes

from .codec import decode_params
from .common import TRUE_WORDS

# Params corral relay adds with a site's settings (the service reads them; see src/relay/inject.ts).
SETTING_PARAM_PREFIX = "CORRAL_SETTING_"
RELAY_TOKEN_PARAM = "CORRAL_RELAY_TOKEN"
# What a request gets when its front does not send it.
DEFAULTS = {"SCRIPT_NAME": "", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": "GET", "SERVER_NAME": "localhost"}


def wsgi_base(threads, file_wrapper):
    """The wsgi.* keys every request shares."""
    return {
        "wsgi.version": (1, 0),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": threads > 1,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": file_wrapper,
        "wsgi.input_terminated": True,  # reads end at the end of the body, with or without a length
    }


def build_environ(data, wsgi_input, defaults, base, trust_original_url):
    """The environ of a request from its raw PARAMS bytes (ProtocolError, IndexError or
    struct.error if they are malformed)."""
    env = defaults.copy()
    decode_params(data, env)
    if "APPL_PHYSICAL_PATH" in env:  # from IIS: corral relay's settings are not the app's business
        for key in [k for k in env if k.startswith(SETTING_PARAM_PREFIX)]:
            del env[key]
    env.pop(RELAY_TOKEN_PARAM, None)  # the relay's pairing secret (src/relay/secret.ts): never the app's
    env.update(base)
    env["wsgi.input"] = wsgi_input
    https = env.get("HTTPS")
    secure = (https is not None and https.lower() in TRUE_WORDS) or \
        env.get("REQUEST_SCHEME") == "https"
    env["wsgi.url_scheme"] = "https" if secure else "http"
    if "SERVER_PORT" not in env:
        env["SERVER_PORT"] = "443" if secure else "80"
    fix_environ(env, trust_original_url)
    return env


def path_from_uri(env):
    """PATH_INFO derived from REQUEST_URI (minus the query and SCRIPT_NAME) when a front omits it."""
    uri = env.get("REQUEST_URI", "").partition("?")[0]
    path = unquote_to_bytes(uri).decode("latin-1")
    script = env.get("SCRIPT_NAME", "")
    if script and path.startswith(script):
        path = path[len(script):]
    return path


def iis_virtual_path(md_path):
    """The IIS application's virtual path from APPL_MD_PATH: /LM/W3SVC/1/ROOT/myapp -> /myapp."""
    upper = md_path.upper()
    at = upper.find("/ROOT")
    if at < 0:
        return ""
    return md_path[at + 5:].rstrip("/")


def fix_iis_paths(env, trust_original_url=False):
    """IIS puts the whole URL path in PATH_INFO (and SCRIPT_NAME), not the part below the app.

    A WSGI app mounted in a virtual application /myapp needs SCRIPT_NAME=/myapp and PATH_INFO=
    the rest, or its routes and generated URLs break (wfastcgi just blanks SCRIPT_NAME). URL
    Rewrite's HTTP_X_ORIGINAL_URL is the URL the client asked for; the query never belongs in
    PATH_INFO. But any client can send X-Original-URL, and honouring it lets a request bypass
    IIS <location> rules: it is used only with --trust-x-original-url (trustOriginalUrl).
    """
    vpath = iis_virtual_path(env.get("APPL_MD_PATH", ""))
    original = env.get("HTTP_X_ORIGINAL_URL") if trust_original_url else None
    url = original or env.get("URL") or env.get("PATH_INFO") or "/"
    path, _, query = url.partition("?")
    if "REQUEST_URI" not in env:
        qs = env.get("QUERY_STRING", "")
        env["REQUEST_URI"] = original or (path + ("?" + qs if qs else ""))
    if original:
        # The original URL arrives percent-encoded; PATH_INFO is the decoded path, as bytes.
        path = unquote_to_bytes(path).decode("latin-1")
        if query and not env.get("QUERY_STRING"):
            env["QUERY_STRING"] = query
    if vpath and path.upper().startswith(vpath.upper()) and (len(path) == len(vpath) or path[len(vpath)] == "/"):
        env["SCRIPT_NAME"] = path[:len(vpath)]
        env["PATH_INFO"] = path[len(vpath):]
    else:
        env["SCRIPT_NAME"] = ""
        env["PATH_INFO"] = path
    if env.get("REQUEST_METHOD") in ("GET", "HEAD") and env.get("CONTENT_LENGTH") == "0":
        del env["CONTENT_LENGTH"]


def fix_environ(env, trust_original_url=False):
    """PEP 3333 corners that fronts get wrong; keeps wsgiref.validate happy."""
    if env.get("SERVER_SOFTWARE", "").startswith("Microsoft-IIS") or "APPL_MD_PATH" in env:
        fix_iis_paths(env, trust_original_url)
    if env.get("CONTENT_LENGTH") == "":
        del env["CONTENT_LENGTH"]  # nginx sends it empty on GET; validate rejects ''
    for key in ("HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE"):
        if key in env:
            value = env.pop(key)
            if value and key[5:] not in env:
                env[key[5:]] = value
    if "PATH_INFO" not in env:
        env["PATH_INFO"] = path_from_uri(env)
    if env["SCRIPT_NAME"] == "/":
        env["SCRIPT_NAME"] = ""
        if not env["PATH_INFO"].startswith("/"):
            env["PATH_INFO"] = "/" + env["PATH_INFO"]
