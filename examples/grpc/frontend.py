"""frontend: a user's page. Fans out to accounts (required: no page
without the user) and twice to recommendations (optional sections).

Run as `frontend.py buggy` to have the seeded bug: a failed Trending call
is not handled, so the page fails with UNKNOWN instead of leaving that
section empty.
"""
import sys

import grpc

import rpc

BUGGY = sys.argv[1:] == ["buggy"]


def section(method, request):
    try:
        return rpc.call("recommendations", method, request, rpc.DEADLINE_LEAF)["movies"]
    except grpc.RpcError:
        return []


def get_page(request, context):
    try:
        user = rpc.call("accounts", "GetUser", request, rpc.DEADLINE_MIDDLE)
    except grpc.RpcError as error:
        context.abort(grpc.StatusCode.UNAVAILABLE, f"accounts: {error.code().name}")
    for_you = section("ForYou", request)
    if BUGGY:
        trending = rpc.call("recommendations", "Trending", request, rpc.DEADLINE_LEAF)["movies"]
    else:
        trending = section("Trending", request)
    return {"user": user, "for_you": for_you, "trending": trending}


rpc.serve("frontend", {"GetPage": get_page})
