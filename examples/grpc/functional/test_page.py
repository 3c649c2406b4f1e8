#!/usr/bin/env python3
"""The shop's functional test: frontend shows chris's page, or answers
UNAVAILABLE when Filibuster failed a call it cannot do without."""
import sys
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import rpc  # noqa: E402

import filibuster  # noqa: E402
from filibuster.assertions import was_fault_injected  # noqa: E402


def test_page():
    try:
        page = rpc.call("frontend", "GetPage", {"user": "chris"}, timeout=5)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.UNAVAILABLE, f"frontend failed: {error.code().name}: {error.details()}"
        assert was_fault_injected(), "frontend failed with no fault injected"
        return
    assert page["user"]["name"] == "Chris", page


if __name__ == "__main__":
    filibuster.loop(test_page)
