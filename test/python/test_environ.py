"""corral_wsgi.environ: the PEP 3333 environ from params, and the fixes for IIS and nginx."""
import sys
import unittest

import support  # noqa: F401  (sys.path)
from corral_wsgi.body import FileWrapper
from corral_wsgi.codec import encode_params
from corral_wsgi.environ import DEFAULTS, build_environ, fix_environ, iis_virtual_path, path_from_uri, wsgi_base


def build(pairs, trust=False, threads=1):
    marker = object()
    env = build_environ(encode_params(pairs), marker, DEFAULTS, wsgi_base(threads, FileWrapper), trust)
    assert env["wsgi.input"] is marker
    return env


def iis(path_info, md_path="/LM/W3SVC/1/ROOT/myapp", **extra):
    pairs = {"SERVER_SOFTWARE": "Microsoft-IIS/10.0", "APPL_MD_PATH": md_path, "PATH_INFO": path_info,
             "SCRIPT_NAME": path_info, "REQUEST_METHOD": "GET"}
    pairs.update(extra)
    return build(pairs, trust=extra.pop("trust", False))


class Building(unittest.TestCase):
    def test_defaults_and_wsgi_keys(self):
        env = build({"PATH_INFO": "/x"})
        for key in ("SCRIPT_NAME", "QUERY_STRING", "SERVER_PROTOCOL", "REQUEST_METHOD", "SERVER_NAME"):
            self.assertEqual(env[key], DEFAULTS[key])
        self.assertEqual(env["wsgi.version"], (1, 0))
        self.assertIs(env["wsgi.errors"], sys.stderr)
        self.assertIs(env["wsgi.file_wrapper"], FileWrapper)
        self.assertFalse(env["wsgi.multithread"])
        self.assertTrue(build({}, threads=4)["wsgi.multithread"])
        self.assertEqual((env["wsgi.url_scheme"], env["SERVER_PORT"]), ("http", "80"))

    def test_defaults_are_not_shared_between_requests(self):
        build({"QUERY_STRING": "a=1"})
        self.assertEqual(DEFAULTS["QUERY_STRING"], "")

    def test_https_from_https_param_or_scheme(self):
        for pairs in ({"HTTPS": "on"}, {"HTTPS": "ON"}, {"HTTPS": "1"}, {"REQUEST_SCHEME": "https"}):
            env = build(pairs)
            self.assertEqual((env["wsgi.url_scheme"], env["SERVER_PORT"]), ("https", "443"), pairs)
        self.assertEqual(build({"HTTPS": "off"})["wsgi.url_scheme"], "http")
        self.assertEqual(build({"HTTPS": "on", "SERVER_PORT": "8443"})["SERVER_PORT"], "8443")

    def test_relay_token_never_reaches_the_app(self):
        self.assertNotIn("CORRAL_RELAY_TOKEN", build({"CORRAL_RELAY_TOKEN": "secret"}))

    def test_relay_settings_are_dropped_under_iis_only(self):
        pairs = {"CORRAL_SETTING_threads": "4", "APPL_PHYSICAL_PATH": "C:\\site"}
        self.assertNotIn("CORRAL_SETTING_threads", build(pairs))
        self.assertEqual(build({"CORRAL_SETTING_threads": "4"})["CORRAL_SETTING_threads"], "4")

    def test_malformed_params_raise(self):
        with self.assertRaises(Exception):
            build_environ(bytes([4, 9]) + b"NAME", None, DEFAULTS, {}, False)


class NginxCorners(unittest.TestCase):
    def test_empty_content_length_is_dropped(self):
        self.assertNotIn("CONTENT_LENGTH", build({"CONTENT_LENGTH": "", "PATH_INFO": "/"}))

    def test_http_content_headers_fill_the_cgi_ones(self):
        env = build({"HTTP_CONTENT_LENGTH": "5", "HTTP_CONTENT_TYPE": "text/plain", "PATH_INFO": "/"})
        self.assertEqual((env["CONTENT_LENGTH"], env["CONTENT_TYPE"]), ("5", "text/plain"))
        self.assertNotIn("HTTP_CONTENT_LENGTH", env)
        env = build({"HTTP_CONTENT_LENGTH": "5", "CONTENT_LENGTH": "7", "PATH_INFO": "/"})
        self.assertEqual(env["CONTENT_LENGTH"], "7")

    def test_path_info_from_request_uri_when_missing(self):
        env = build({"REQUEST_URI": "/app/a%20b/c?q=1", "SCRIPT_NAME": "/app"})
        self.assertEqual((env["SCRIPT_NAME"], env["PATH_INFO"]), ("/app", "/a b/c"))
        self.assertEqual(path_from_uri({"REQUEST_URI": "/%C3%A9"}), "/\xc3\xa9")
        self.assertEqual(path_from_uri({}), "")

    def test_script_name_slash_moves_to_path_info(self):
        env = build({"SCRIPT_NAME": "/", "PATH_INFO": "x"})
        self.assertEqual((env["SCRIPT_NAME"], env["PATH_INFO"]), ("", "/x"))
        env = build({"SCRIPT_NAME": "/", "PATH_INFO": "/x"})
        self.assertEqual((env["SCRIPT_NAME"], env["PATH_INFO"]), ("", "/x"))


class IisPaths(unittest.TestCase):
    def test_virtual_path_from_md_path(self):
        self.assertEqual(iis_virtual_path("/LM/W3SVC/1/ROOT/myapp"), "/myapp")
        self.assertEqual(iis_virtual_path("/LM/W3SVC/1/root/a/b/"), "/a/b")
        self.assertEqual(iis_virtual_path("/LM/W3SVC/1/ROOT"), "")
        self.assertEqual(iis_virtual_path("nothing"), "")

    def test_virtual_application_splits_script_name_and_path_info(self):
        env = iis("/myapp/users/1")
        self.assertEqual((env["SCRIPT_NAME"], env["PATH_INFO"]), ("/myapp", "/users/1"))
        self.assertEqual(env["REQUEST_URI"], "/myapp/users/1")

    def test_the_virtual_path_matches_case_insensitively_and_only_whole_segments(self):
        env = iis("/MyApp/x")
        self.assertEqual((env["SCRIPT_NAME"], env["PATH_INFO"]), ("/MyApp", "/x"))
        env = iis("/myapplication/x")
        self.assertEqual((env["SCRIPT_NAME"], env["PATH_INFO"]), ("", "/myapplication/x"))
        env = iis("/myapp")
        self.assertEqual((env["SCRIPT_NAME"], env["PATH_INFO"]), ("/myapp", ""))  # PEP 3333 allows ""

    def test_site_root_keeps_the_whole_path(self):
        env = iis("/a/b", md_path="/LM/W3SVC/1/ROOT")
        self.assertEqual((env["SCRIPT_NAME"], env["PATH_INFO"]), ("", "/a/b"))

    def test_query_string_goes_into_request_uri_not_path_info(self):
        env = iis("/myapp/x", QUERY_STRING="a=1")
        self.assertEqual(env["REQUEST_URI"], "/myapp/x?a=1")
        self.assertEqual(env["PATH_INFO"], "/x")

    def test_x_original_url_is_used_only_when_trusted(self):
        extra = {"HTTP_X_ORIGINAL_URL": "/myapp/orig%20inal?z=2"}
        env = iis("/myapp/rewritten", **extra)
        self.assertEqual(env["PATH_INFO"], "/rewritten")
        env = build({"SERVER_SOFTWARE": "Microsoft-IIS/10.0", "APPL_MD_PATH": "/LM/W3SVC/1/ROOT/myapp",
                     "PATH_INFO": "/myapp/rewritten", "REQUEST_METHOD": "GET", **extra}, trust=True)
        self.assertEqual((env["SCRIPT_NAME"], env["PATH_INFO"]), ("/myapp", "/orig inal"))
        self.assertEqual((env["QUERY_STRING"], env["REQUEST_URI"]), ("z=2", "/myapp/orig%20inal?z=2"))

    def test_get_with_content_length_zero_drops_it(self):
        self.assertNotIn("CONTENT_LENGTH", iis("/myapp/", CONTENT_LENGTH="0"))
        post = iis("/myapp/", CONTENT_LENGTH="0", REQUEST_METHOD="POST")
        self.assertEqual(post["CONTENT_LENGTH"], "0")

    def test_url_param_wins_over_path_info(self):
        env = iis("/myapp/from-path-info", URL="/myapp/from-url")
        self.assertEqual(env["PATH_INFO"], "/from-url")

    def test_applies_on_appl_md_path_without_server_software(self):
        env = {"APPL_MD_PATH": "/LM/W3SVC/1/ROOT/v", "PATH_INFO": "/v/p", "SCRIPT_NAME": "/v/p"}
        fix_environ(env)
        self.assertEqual((env["SCRIPT_NAME"], env["PATH_INFO"]), ("/v", "/p"))


if __name__ == "__main__":
    unittest.main()
