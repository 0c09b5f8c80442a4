"""corral_wsgi.devtrace: an exception's facts for the dev page (more in test/unit/devtrace-py.test.ts)."""
import json
import os
import unittest

import support  # noqa: F401  (src/python on sys.path)
from corral_wsgi import devtrace


class Facts(unittest.TestCase):
    def test_a_syntax_error_carries_its_file_line_and_caret(self):
        try:
            compile("def broken(:\n    pass\n", "/srv/app/wsgi.py", "exec")
        except SyntaxError as exc:
            facts = devtrace.report(exc, ["/srv/app"])
        first = facts["exceptions"][0]
        self.assertEqual(first["type"], "SyntaxError")
        self.assertEqual((first["syntax"]["file"], first["syntax"]["line"]), ("/srv/app/wsgi.py", 1))
        self.assertIn("def broken(:", first["syntax"]["text"])

    def test_the_chain_keeps_cause_and_context_in_order(self):
        try:
            try:
                raise KeyError("inner")
            except KeyError as inner:
                raise RuntimeError("outer") from inner
        except RuntimeError as exc:
            facts = devtrace.report(exc, [os.path.dirname(__file__)])
        types = [e["type"] for e in facts["exceptions"]]
        self.assertEqual(sorted(types), ["KeyError", "RuntimeError"])
        vias = {e["type"]: e["via"] for e in facts["exceptions"]}
        self.assertTrue(any(v for v in vias.values()), vias)  # one of them says how they are linked

    def test_the_request_is_described_and_the_body_is_json(self):
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/x", "HTTP_USER_AGENT": "t"}
        body = devtrace.body(ValueError("v"), [], environ)
        data = json.loads(body.decode("utf-8"))
        self.assertEqual(data["exceptions"][0]["message"], "v")
        self.assertIn("POST", json.dumps(data["request"]))


if __name__ == "__main__":
    unittest.main()
