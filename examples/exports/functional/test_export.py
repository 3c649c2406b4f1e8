#!/usr/bin/env python3
"""An export answers the user's records, or 503 when exports are down. No
timeout here, as in most tests: a request that never ends is the agent's
to stop (--execution-timeout)."""
import requests

import filibuster


def test_export():
    response = requests.get("http://localhost:5000/export/alice")
    assert response.status_code in (200, 503), response.text


if __name__ == "__main__":
    filibuster.loop(test_export)
