"""corral_wsgi.appload: app specs, importing the app, and where an error lies."""
import importlib
import os
import sys
import tempfile
import textwrap
import unittest
from unittest import mock

import support  # noqa: F401  (sys.path)
from corral_wsgi.appload import app_script, failure_info, load_app, locate_error, parse_app_spec
from corral_wsgi.common import UsageError


class Specs(unittest.TestCase):
    def test_forms(self):
        self.assertEqual(parse_app_spec("mod:app"), ("mod", [("app", False)]))
        self.assertEqual(parse_app_spec("pkg.mod:obj.attr"), ("pkg.mod", [("obj", False), ("attr", False)]))
        self.assertEqual(parse_app_spec("pkg.mod:factory()"), ("pkg.mod", [("factory", True)]))
        self.assertEqual(parse_app_spec("mod:factory().app"), ("mod", [("factory", True), ("app", False)]))
        self.assertEqual(parse_app_spec("mod"), ("mod", [("application", False)]))
        self.assertEqual(parse_app_spec("mod.app"), (None, [("mod", False), ("app", False)]))
        self.assertEqual(parse_app_spec("pkg.mod.make()"), (None, [("pkg", False), ("mod", False), ("make", True)]))

    def test_bad_specs(self):
        for bad in ("", "mod:", ":app", "mod:a-b", "1mod:app", "mod:app()()", "make().app", "a b:c"):
            with self.subTest(spec=bad), self.assertRaises(UsageError):
                parse_app_spec(bad)


class Loading(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        sys.path.insert(0, self.dir.name)
        self.addCleanup(sys.path.remove, self.dir.name)
        self.names = []
        self.addCleanup(self.forget)

    def forget(self):
        for name in list(sys.modules):
            if name.split(".")[0] in self.names:
                del sys.modules[name]
        importlib.invalidate_caches()

    def write(self, relpath, text):
        path = os.path.join(self.dir.name, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        self.names.append(relpath.split("/")[0].split(".")[0])
        importlib.invalidate_caches()
        return path

    def test_module_callable_factory_and_dotted(self):
        self.write("ua_one.py", """
            def application(e, s): return []
            def make(): return application
            class Holder:
                app = application
        """)
        app = load_app("ua_one:application")
        self.assertIs(load_app("ua_one:make()"), app)
        self.assertIs(load_app("ua_one.application"), app)
        self.assertIs(load_app("ua_one.make()"), app)
        self.assertIs(load_app("ua_one:Holder.app"), app)
        self.assertIs(load_app("ua_one"), app)

    def test_dotted_spec_imports_the_longest_module_prefix(self):
        self.write("ua_pkg/__init__.py", "")
        self.write("ua_pkg/web.py", "def application(e, s): return []\n")
        self.assertEqual(load_app("ua_pkg.web.application").__module__, "ua_pkg.web")

    def test_a_missing_dependency_is_the_apps_error(self):
        self.write("ua_dep.py", "import ua_no_such_dependency\napplication = None\n")
        with self.assertRaises(ModuleNotFoundError) as caught:
            load_app("ua_dep.application")
        self.assertEqual(caught.exception.name, "ua_no_such_dependency")

    def test_not_callable_and_missing_attribute(self):
        self.write("ua_two.py", "application = 42\n")
        with self.assertRaisesRegex(TypeError, "not callable"):
            load_app("ua_two:application")
        with self.assertRaises(AttributeError):
            load_app("ua_two:nothing")

    def test_virtualenv_proxy_runs_activate_this_and_loads_the_real_handler(self):
        self.write("ua_real.py", "def application(e, s): return []\n")
        activate = self.write("ua_activate_this.py", "import os\nos.environ['UA_ACTIVATED'] = '1'\n")
        env = {"WSGI_ALT_VIRTUALENV_HANDLER": "ua_real.application", "WSGI_ALT_VIRTUALENV_ACTIVATE_THIS": activate}
        with mock.patch.dict(os.environ, env):
            app = load_app("ptvs_virtualenv_proxy.get_virtualenv_handler()")
            self.assertEqual(os.environ.get("UA_ACTIVATED"), "1")
        self.assertEqual(app.__module__, "ua_real")
        with mock.patch.dict(os.environ, {"WSGI_ALT_VIRTUALENV_HANDLER": ""}), self.assertRaises(UsageError):
            load_app("ptvs_virtualenv_proxy.get_venv_handler")

    def test_app_script_finds_the_file_without_importing(self):
        path = self.write("ua_script.py", "raise SystemExit('must not be imported')\n")
        self.assertEqual(app_script("ua_script:application", [self.dir.name]), path)
        self.assertIsNone(app_script("ua_absent:app", [self.dir.name]))
        self.assertIsNone(app_script("bad spec!", [self.dir.name]))

    def test_locate_error_prefers_the_innermost_frame_in_the_app(self):
        self.write("ua_lib.py", "def fail():\n    raise ValueError('deep')\n")
        self.write("ua_three.py", "import ua_lib\n\n\ndef application(e, s):\n    ua_lib.fail()\n")
        app = load_app("ua_three:application")
        try:
            app({}, None)
        except ValueError as exc:
            error = exc
        path, line = locate_error(error, [self.dir.name])
        self.assertEqual((os.path.basename(path), line), ("ua_lib.py", 2))
        path, line = locate_error(error, ["/elsewhere"])
        self.assertEqual(os.path.basename(path), "ua_lib.py")  # no frame in the app dirs: the innermost other

    def test_locate_error_of_a_syntax_error_and_failure_info(self):
        path = self.write("ua_bad.py", "x = 1\ndef broken(:\n")
        try:
            load_app("ua_bad:application")
        except SyntaxError as exc:
            error = exc
        self.assertEqual(locate_error(error, [self.dir.name]), (path, 2))
        info = failure_info("import", error, [self.dir.name])
        self.assertEqual((info["kind"], info["file"], info["line"]), ("import", path, 2))
        self.assertTrue(info["error"].startswith("SyntaxError: "))
        self.assertIn("Traceback", info["traceback"])

    def test_frames_of_the_worker_itself_are_never_the_location(self):
        self.write("ua_five.py", "application = 42\n")
        try:
            load_app("ua_five:application")  # raises inside appload.py, called from here
        except TypeError as exc:
            error = exc
        here = (os.path.abspath(__file__), error.__traceback__.tb_lineno)
        self.assertEqual(locate_error(error, [self.dir.name]), here)


if __name__ == "__main__":
    unittest.main()
