"""The original Filibuster's assertion helpers, answered by the agent."""
from urllib.parse import quote

from filibuster import _ask


def was_fault_injected():
    """Whether the current execution injected any fault so far."""
    return bool(_ask("/filibuster/fault-injected")["result"])


def was_fault_injected_on(service_name):
    """Whether the current execution injected a fault on a call to this service."""
    return bool(_ask("/filibuster/fault-injected/" + quote(service_name, safe=""))["result"])
