"""Helpers for tests run under Filibuster.

Services need nothing from this package: the agent observes their traffic
from the kernel. Tests use `filibuster.assertions` to ask the agent which
faults the current execution injected, and `filibuster.loop` (or the pytest
plugin) to stay up across executions instead of starting once per
execution.
"""
import contextlib
import json
import os
import traceback
import urllib.request

CONTROL_URL = os.environ.get("FILIBUSTER_CONTROL_URL", "http://127.0.0.1:5005")


def _ask(path, body=None, timeout=5):
    # urllib, not requests: the helpers must not depend on what the test uses.
    request = urllib.request.Request(CONTROL_URL + path)
    request.add_header("x-filibuster-token", os.environ.get("FILIBUSTER_TOKEN", ""))
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


@contextlib.contextmanager
def setup():
    """Marks what the test does inside as setup, not under test: the
    requests it makes there (logging in, filling a cart), and every call
    made serving them, are never failed. Also a decorator, for a setup
    helper. In a pytest fixture, wrap the part before its `yield` only.
    Outside a run it does nothing."""
    if "FILIBUSTER_TOKEN" not in os.environ:
        yield
        return
    _ask("/filibuster/setup/begin", {})
    try:
        yield
    finally:
        _ask("/filibuster/setup/end", {})


def looping():
    """Whether the agent started this process to drive it through executions."""
    return os.environ.get("FILIBUSTER_LOOP") == "1"


def executions():
    """The executions the agent asks this process to run, as they begin.

    Each number is handed out once the execution's faults are armed; report
    how the test did with `report` before asking for the next."""
    while True:
        # No timeout: the agent answers when the next execution has begun.
        answer = _ask("/filibuster/loop/next", timeout=None)
        if answer.get("done"):
            return
        yield answer["execution"]


def report(execution, passed, output=""):
    """Tells the agent how the test body did in `execution`."""
    _ask("/filibuster/loop/result", {"execution": execution, "passed": passed, "output": output})


def loop(test_fn):
    """Runs `test_fn` once per execution while the agent drives this process
    (`[test] loop = true`); any exception fails that execution. Run outside
    the loop, it calls `test_fn` once and lets exceptions through, so the
    same script also works per execution and on its own."""
    if not looping():
        test_fn()
        return
    for execution in executions():
        try:
            test_fn()
        except Exception:  # the test's failure, whatever its kind
            report(execution, False, traceback.format_exc())
        else:
            report(execution, True)
