"""accounts: a user and, when the ledger answers, their balance (the
chain: frontend → accounts → ledger)."""
import grpc

import rpc

USERS = {"chris": {"name": "Chris"}}


def get_user(request, context):
    user = USERS.get(request["user"])
    if user is None:
        context.abort(grpc.StatusCode.NOT_FOUND, "no such user")
    try:
        balance = rpc.call("ledger", "GetBalance", request, rpc.DEADLINE_LEAF)["balance"]
    except grpc.RpcError:
        balance = None  # shown as unknown; the page still works
    return {**user, "balance": balance}


rpc.serve("accounts", {"GetUser": get_user})
