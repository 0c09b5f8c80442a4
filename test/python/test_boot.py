"""corral_wsgi.boot: paths, FATAL reports, malloc tuning, and the entry as the service runs it."""
import gc
import json
import os
import subprocess
import sys
import tempfile
import unittest
import weakref
from unittest import mock

import support
from corral_wsgi import boot, codec
from corral_wsgi.common import UsageError

PROBE = """
import json, sys
with open(%r, "w") as f:
    json.dump({"path": sys.path, "argv": sys.argv,
               "modules": sorted(m for m in sys.modules if m.startswith("corral"))}, f)
def application(environ, start_response):
    start_response("200 OK", [])
    return [b""]
"""


class Paths(unittest.TestCase):
    def test_split_pythonpath(self):
        sep = os.pathsep
        self.assertEqual(boot.split_pythonpath(" /a ;/b%s/c;;" % sep), ["/a", "/b", "/c"])
        self.assertEqual(boot.split_pythonpath(None), [])
        self.assertEqual(boot.split_pythonpath("$HOME"), [os.path.abspath("$HOME")])  # never expanded

    def test_setup_paths(self):
        cwd, saved = os.getcwd(), list(sys.path)
        self.addCleanup(os.chdir, cwd)
        self.addCleanup(sys.path.__setitem__, slice(None), saved)
        with tempfile.TemporaryDirectory() as root, tempfile.TemporaryDirectory() as extra:
            root, extra = os.path.realpath(root), os.path.realpath(extra)
            sys.path[:] = [boot.HERE, "/somewhere", extra]
            self.assertEqual(boot.setup_paths(root, extra), [root, extra])
            self.assertEqual(sys.path, [root, extra, "/somewhere"])
            self.assertEqual(os.path.realpath(os.getcwd()), root)
            with self.assertRaises(UsageError):
                boot.setup_paths(os.path.join(root, "missing"), None)

    def test_here_is_the_entry_directory(self):
        self.assertEqual(boot.HERE, support.SRC)


class Failures(unittest.TestCase):
    def test_report_failure_writes_fatal_and_stderr(self):
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        try:
            raise ValueError("x" * 100000)  # too large for one record: cut
        except ValueError as exc:
            with open(os.devnull, "w") as null, mock.patch.object(sys, "stderr", new=null):
                boot.report_failure("import", exc, w, [], summary="cannot import")
        [(rtype, rid, content)] = support.parse(os.read(r, 1 << 17))
        info = json.loads(content)
        self.assertEqual((rtype, rid, info["kind"]), (codec.CORRAL_FATAL, 0, "import"))
        self.assertLessEqual(len(content), codec.MAX_CONTENT)
        self.assertTrue(info["error"].startswith("ValueError: xxx"))

    def test_fatal_fd_for_usage(self):
        self.assertIsNone(boot.fatal_fd_for_usage(["--listen", "x:1"]))
        self.assertIsNone(boot.fatal_fd_for_usage(["--listen=x:1"]))
        with mock.patch.object(os, "isatty", return_value=False):
            self.assertEqual(boot.fatal_fd_for_usage([]), 1)
        with mock.patch.object(os, "isatty", return_value=True):
            self.assertIsNone(boot.fatal_fd_for_usage([]))

    def test_tune_malloc_leaves_glibc_tunables_alone(self):
        with mock.patch.dict(os.environ, {"MALLOC_ARENA_MAX": "2"}):
            self.assertFalse(boot.tune_malloc())


class Heap(unittest.TestCase):
    def test_freeze_heap_collects_the_garbage_then_freezes_the_rest(self):
        class Node:
            pass
        self.addCleanup(gc.unfreeze)
        garbage, alive = Node(), Node()
        garbage.self = garbage  # a cycle, as imports leave them: only the collector frees it
        dead = weakref.ref(garbage)
        del garbage
        boot.freeze_heap()
        self.assertIsNone(dead())  # collected, not frozen for good
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertFalse(any(o is alive for o in gc.get_objects()))  # no collection walks it again


class Entry(unittest.TestCase):
    """The entry as the service runs it: a fresh process per case."""

    def run_worker(self, argv, module=False, stdin=b""):
        with tempfile.TemporaryDirectory() as root:
            out = os.path.join(root, "seen.json")
            with open(os.path.join(root, "probe.py"), "w") as f:
                f.write(PROBE % out)
            env = dict(os.environ)
            env.pop("WSGI_APP", None)
            if module:
                env["PYTHONPATH"] = support.SRC
                cmd = [sys.executable, "-m", "corral_worker"]
            else:
                cmd = [sys.executable, support.WORKER]
            proc = subprocess.run(cmd + ["--root", root] + argv, input=stdin, capture_output=True, env=env,
                                  cwd=root, timeout=60)
            seen = None
            if os.path.exists(out):
                with open(out) as f:
                    seen = json.load(f)
            return proc, seen, os.path.realpath(root)

    def assert_clean_path(self, seen, root):
        self.assertEqual(os.path.realpath(seen["path"][0]), root)
        self.assertNotIn(support.SRC, [os.path.abspath(p) for p in seen["path"]])
        self.assertIn("corral_wsgi.boot", seen["modules"])
        self.assertEqual(seen["argv"], [os.path.join(root, "probe.py")])

    def test_as_a_script_ready_then_stop_on_stdin_eof(self):
        proc, seen, root = self.run_worker(["--app", "probe:application"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        [(rtype, _, content)] = support.parse(proc.stdout)
        self.assertEqual(rtype, codec.CORRAL_READY)
        self.assertEqual(json.loads(content)["app"], "probe:application")
        self.assert_clean_path(seen, root)

    def test_as_a_module(self):
        proc, seen, root = self.run_worker(["--app", "probe:application"], module=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assert_clean_path(seen, root)

    def test_bad_usage_exits_3_with_fatal(self):
        proc, _, _ = self.run_worker(["--threads", "0"])
        self.assertEqual(proc.returncode, 3)
        [(rtype, _, content)] = support.parse(proc.stdout)
        self.assertEqual((rtype, json.loads(content)["kind"]), (codec.CORRAL_FATAL, "boot"))
        self.assertIn(b"bad usage: --threads must be at least 1", proc.stderr)

    def test_import_failure_exits_4_with_fatal(self):
        proc, _, _ = self.run_worker(["--app", "probe:missing"])
        self.assertEqual(proc.returncode, 4)
        [(rtype, _, content)] = support.parse(proc.stdout)
        info = json.loads(content)
        self.assertEqual((rtype, info["kind"]), (codec.CORRAL_FATAL, "import"))
        self.assertTrue(info["error"].startswith("AttributeError"))


if __name__ == "__main__":
    unittest.main()
