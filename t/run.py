#!/usr/bin/python3
"""Postern test runner: Catch2 unit tests (normal and sanitizer builds), a short
run of each libFuzzer target in build/fuzz/ (from `make fuzz`), and the
integration tests in t/integration/*_test.py. Prints one line per test and ends
with exactly one summary line: `N passed, N failed, N skipped`.

Integration tests are plain functions named test_* in modules named *_test.py;
they raise harness.Skip(reason) when they cannot run here (e.g. not root)."""
import argparse
import glob
import importlib.util
import os
import signal
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_TIMEOUT = 180  # seconds per integration test function
UNIT_TIMEOUT = 300  # seconds per unit test binary
FUZZ_SECONDS = 10  # libFuzzer -max_total_time per target
FUZZ_TIMEOUT = 60  # hard limit per fuzz target, startup and seed corpus included

passed = failed = skipped = 0


def run_unit(build, label):
    global passed, failed
    for binary in sorted(glob.glob(os.path.join(ROOT, build, "t", "*_test"))):
        name = f"{label}{os.path.basename(binary)}"
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        t0 = time.time()
        try:
            proc = subprocess.run([binary, "-r", "xml"], capture_output=True, timeout=UNIT_TIMEOUT,
                                  env=env, cwd=ROOT)
        except subprocess.TimeoutExpired:
            print(f"FAIL {name}: timed out after {UNIT_TIMEOUT}s")
            failed += 1
            continue
        ok = fail = 0
        try:
            root = ET.fromstring(proc.stdout.decode("utf-8", "replace"))
            res = root.find("OverallResultsCases")
            ok = int(res.get("successes"))
            fail = int(res.get("failures"))
        except Exception as e:  # crashed before the report was complete
            fail = max(fail, 1)
            print(f"FAIL {name}: no complete report ({e}); exit {proc.returncode}")
        if proc.returncode != 0 and fail == 0:
            fail = 1
            print(f"FAIL {name}: exit status {proc.returncode}")
        passed += ok
        failed += fail
        status = "ok  " if fail == 0 else "FAIL"
        print(f"{status} {name}: {ok} passed, {fail} failed ({time.time() - t0:.1f}s)", flush=True)
        if fail:
            # Show the failures in Catch2's readable form.
            again = subprocess.run([binary], capture_output=True, timeout=UNIT_TIMEOUT, env=env, cwd=ROOT)
            sys.stdout.write(again.stdout.decode("utf-8", "replace")[-6000:])
            sys.stdout.write(again.stderr.decode("utf-8", "replace")[-4000:])
            sys.stdout.write(proc.stderr.decode("utf-8", "replace")[-4000:])


def run_fuzz():
    """Each fuzz/<name>.cpp whose binary build/fuzz/<name> exists runs for FUZZ_SECONDS
    and counts as one test; one that was not built (no clang++) is skipped. New inputs
    go to a fresh temporary corpus; the seeds in t/data/fuzz/<name>/ are only read.
    Crash inputs are kept as build/fuzz/crashes/<name>-crash-* for reproduction."""
    global passed, failed, skipped
    crashes = os.path.join(ROOT, "build", "fuzz", "crashes")
    for src in sorted(glob.glob(os.path.join(ROOT, "fuzz", "*.cpp"))):
        target = os.path.basename(src)[:-4]
        name = f"fuzz:{target}"
        binary = os.path.join(ROOT, "build", "fuzz", target)
        if not os.access(binary, os.X_OK):
            skipped += 1
            print(f"skip {name}: build/fuzz/{target} not built (make fuzz needs clang++)", flush=True)
            continue
        os.makedirs(crashes, exist_ok=True)
        corpus = tempfile.mkdtemp(prefix=f"postern-{target}-")
        seeds = os.path.join(ROOT, "t", "data", "fuzz", target)
        cmd = [binary, f"-max_total_time={FUZZ_SECONDS}", "-rss_limit_mb=2048", "-timeout=10",
               "-print_final_stats=0", f"-artifact_prefix={os.path.join(crashes, target)}-", corpus]
        if os.path.isdir(seeds):
            cmd.append(seeds)
        t0 = time.time()
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=FUZZ_TIMEOUT, cwd=ROOT)
            ok = proc.returncode == 0
            why = f"exit status {proc.returncode}"
            out = proc.stdout
        except subprocess.TimeoutExpired as e:
            ok, why, out = False, f"timed out after {FUZZ_TIMEOUT}s", e.stdout or b""
        finally:
            shutil.rmtree(corpus, ignore_errors=True)
        if ok:
            passed += 1
            print(f"ok   {name} ({time.time() - t0:.1f}s)", flush=True)
        else:
            failed += 1
            print(f"FAIL {name}: {why} ({time.time() - t0:.1f}s)", flush=True)
            sys.stdout.write(out.decode("utf-8", "replace")[-4000:] + "\n")


def run_lint():
    """scripts/lint (layering, raw allocation) counts as one test."""
    global passed, failed
    proc = subprocess.run([os.path.join(ROOT, "scripts", "lint")], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode == 0:
        passed += 1
        print("ok   lint", flush=True)
    else:
        failed += 1
        print(f"FAIL lint\n{proc.stdout}{proc.stderr}", flush=True)


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout(f"timed out after {TEST_TIMEOUT}s")


def run_integration(build, only):
    global passed, failed, skipped
    sys.path.insert(0, os.path.join(ROOT, "t", "integration"))
    os.environ["POSTERN_BUILD"] = os.path.join(ROOT, build)
    os.environ["POSTERN_ROOT"] = ROOT
    import harness
    signal.signal(signal.SIGALRM, _alarm)
    for path in sorted(glob.glob(os.path.join(ROOT, "t", "integration", "*_test.py"))):
        modname = os.path.basename(path)[:-3]
        if only and only not in modname:
            continue
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception:
            print(f"FAIL {modname}: cannot load\n{traceback.format_exc()}")
            failed += 1
            continue
        tests = [(n, f) for n, f in vars(mod).items() if n.startswith("test_") and callable(f)]
        tests.sort(key=lambda nf: nf[1].__code__.co_firstlineno)
        for name, fn in tests:
            full = f"{modname}.{name}"
            t0 = time.time()
            signal.alarm(TEST_TIMEOUT)
            try:
                fn()
                signal.alarm(0)
                passed += 1
                print(f"ok   {full} ({time.time() - t0:.1f}s)", flush=True)
            except harness.Skip as e:
                signal.alarm(0)
                skipped += 1
                print(f"skip {full}: {e}", flush=True)
            except BaseException as e:  # noqa: includes Timeout and KeyboardInterrupt from tests
                signal.alarm(0)
                if isinstance(e, KeyboardInterrupt):
                    raise
                failed += 1
                print(f"FAIL {full} ({time.time() - t0:.1f}s)\n{traceback.format_exc()}", flush=True)
            finally:
                harness.cleanup_all()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--san-build")
    ap.add_argument("--unit-only", action="store_true")
    ap.add_argument("--integration-only", action="store_true")
    ap.add_argument("--only")
    a = ap.parse_args()
    if not a.integration_only:
        run_lint()
        run_unit(a.build, "")
        if a.san_build:
            run_unit(a.san_build, "san:")
        run_fuzz()
    if not a.unit_only:
        run_integration(a.build, a.only)
    print(f"{passed} passed, {failed} failed, {skipped} skipped", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
