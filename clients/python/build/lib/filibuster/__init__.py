"""Helpers for tests run under Filibuster.

Services need nothing from this package: the agent observes their traffic
from the kernel. Tests use `filibuster.assertions` to ask the agent which
faults the current execution injected.
"""
import json
import os
import urllib.request

CONTROL_URL = os.environ.get("FILIBUSTER_CONTROL_URL", "http://127.0.0.1:5005")


def _ask(path):
    # urllib, not requests: the helpers must not depend on what the test uses.
    with urllib.request.urlopen(CONTROL_URL + path, timeout=5) as response:
        return json.load(response)
