"""The pytest plugin (entry point `pytest11`): under `filibuster test` with
`[test] pytest = "..."`, one pytest process runs the tests once per
execution, instead of one process per execution. Outside Filibuster it does
nothing.

The tests run are those marked `@pytest.mark.filibuster`, or every test
collected when none is marked. `@pytest.mark.filibuster_setup("cart")` on
a test makes the setup of the fixtures it names (all of the test's, when
it names none) setup, not under test: nothing done there is failed.
"""
import pytest
from _pytest.runner import runtestprotocol  # as pytest-rerunfailures does: no public API

import filibuster


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "filibuster: run this test once per Filibuster execution"
    )
    config.addinivalue_line(
        "markers",
        "filibuster_setup(*fixtures): these fixtures' setup (all, if none is named) is not under test",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    marker = request.node.get_closest_marker("filibuster_setup")
    if marker is None or (marker.args and fixturedef.argname not in marker.args):
        yield
        return
    with filibuster.setup():
        yield


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    if not filibuster.looping():
        return None
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        raise session.Interrupted(f"{session.testsfailed} error(s) during collection")
    items = [i for i in session.items if i.get_closest_marker("filibuster")] or session.items
    if not items:
        raise session.Interrupted("no tests collected for Filibuster to run")
    for execution in filibuster.executions():
        failures = []
        for item in items:
            for result in runtestprotocol(item, nextitem=None, log=False):
                if result.failed:
                    failures.append(f"{item.nodeid} ({result.when}):\n{result.longreprtext}")
        filibuster.report(execution, not failures, "\n\n".join(failures))
    return True
