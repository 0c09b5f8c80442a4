"""corral_wsgi.apphints: the messages of an app that does not load."""
import os
import shutil
import sys
import tempfile
import unittest

import support  # noqa: F401  (src/python on sys.path)
from corral_wsgi import apphints


class NotCallable(unittest.TestCase):
    def test_a_page_string_is_named_by_type_and_size_not_its_repr(self):
        page = "<html>" + "x" * 5000
        message = apphints.not_callable("wsgi:PAGE", page)
        self.assertIn("wsgi:PAGE resolves to a str of 5006 characters, which is not callable", message)
        self.assertLess(len(message), 200)
        self.assertIn("WSGI application object", message)

    def test_a_module_suggests_the_callable_inside_it(self):
        message = apphints.not_callable("os", os)
        self.assertIn("e.g. os:application", message)

    def test_other_objects_show_a_clipped_repr(self):
        text = apphints.describe(list(range(1000)))
        self.assertTrue(text.startswith("a list ([0, 1, 2"), text)
        self.assertTrue(text.endswith("...)"), text)
        self.assertEqual(apphints.describe(b"abc"), "a bytes of 3 bytes")


class Hint(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root)

    def missing(self, name):
        try:
            __import__(name)
        except ModuleNotFoundError as exc:
            return exc
        self.fail("%s imported" % name)

    def test_only_module_not_found_gets_a_hint(self):
        self.assertIsNone(apphints.hint(ValueError("x"), "wsgi:application", [self.root], sys.path))

    def test_names_the_directories_searched_and_the_interpreter(self):
        exc = self.missing("corral_no_such_module_here")
        text = apphints.hint(exc, "wsgi:application", [self.root], [self.root, "/a", "/b"])
        self.assertIn("searched %s and 2 directories of the interpreter" % self.root, text)
        self.assertIn(sys.executable, text)
        self.assertIn("Python %d.%d.%d" % sys.version_info[:3], text)
        self.assertIn("--python", text)

    def test_django_layout_is_suggested_when_the_top_module_is_missing(self):
        os.makedirs(os.path.join(self.root, "mysite"))
        open(os.path.join(self.root, "mysite", "wsgi.py"), "w").close()
        exc = ModuleNotFoundError("No module named 'wsgi'", name="wsgi")
        text = apphints.hint(exc, "wsgi:application", [self.root], [self.root])
        self.assertIn("Django's layout: try --wsgi-app mysite.wsgi:application", text)
        self.assertEqual(apphints.django_layout(self.root), "mysite.wsgi:application")

    def test_two_candidate_projects_are_not_guessed(self):
        for name in ("one", "two"):
            os.makedirs(os.path.join(self.root, name))
            open(os.path.join(self.root, name, "wsgi.py"), "w").close()
        self.assertIsNone(apphints.django_layout(self.root))
        self.assertIsNone(apphints.django_layout(os.path.join(self.root, "absent")))


if __name__ == "__main__":
    unittest.main()
