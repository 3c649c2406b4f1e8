"""ledger: a user's balance. A leaf."""
import rpc

BALANCES = {"chris": 42}


def get_balance(request, context):
    return {"balance": BALANCES.get(request["user"], 0)}


rpc.serve("ledger", {"GetBalance": get_balance})
