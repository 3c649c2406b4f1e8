#!/usr/bin/env python3
"""The tutorial's functional test: foo answers "foo bar baz", or, when a
fault was injected somewhere, fails gracefully with 503 or 404.

Runs as a script (per execution, or looping with `--test-loop`) and under
pytest (`[test] pytest = "functional/"`)."""
import os
import requests

import filibuster
from filibuster.assertions import was_fault_injected

# Where foo is reached (a container is given its address).
FOO_URL = os.environ.get("FOO_URL", "http://localhost:5000")


def test_functional_foo_bar_baz():
    response = requests.get(FOO_URL + "/foo/bar/baz", timeout=5)
    if response.status_code == 200:
        assert (not was_fault_injected()) and response.text == "foo bar baz"
    else:
        assert was_fault_injected() and response.status_code in [503, 404], (
            f"foo answered {response.status_code}: {response.text[:200]!r}"
        )


if __name__ == "__main__":
    # Once per process, or once per execution when the agent drives a loop.
    filibuster.loop(test_functional_foo_bar_baz)
