"""cart: a user's carts, and their checkout."""
import itertools

import requests
from flask import Flask, abort, jsonify, request

app = Flask(__name__)

AUTH = "http://localhost:5400"
PAYMENT = "http://localhost:5402"
INVENTORY = "http://localhost:5403"
TIMEOUT = 0.5

carts = {}
ids = itertools.count(1)


def user():
    """The user the request's token is for; 401, or 503 without auth."""
    try:
        verified = requests.get(
            f"{AUTH}/verify",
            headers={"Authorization": request.headers.get("Authorization", "")},
            timeout=TIMEOUT,
        )
    except requests.RequestException:
        abort(503)
    if verified.status_code != 200:
        abort(401 if verified.status_code == 401 else 503)
    return verified.json()["user"]


@app.post("/carts")
def open_cart():
    cart_id = f"c{next(ids)}"
    carts[cart_id] = {"user": user(), "items": []}
    return jsonify(id=cart_id), 201


@app.post("/carts/<cart_id>/items")
def add_item(cart_id):
    cart = carts.get(cart_id) or abort(404)
    user()
    sku = request.get_json(force=True)["sku"]
    try:
        item = requests.get(f"{INVENTORY}/items/{sku}", timeout=TIMEOUT)
    except requests.RequestException:
        abort(503)
    if item.status_code != 200:
        abort(503)
    cart["items"].append(item.json())
    return jsonify(cart)


@app.post("/checkout/<cart_id>")
def checkout(cart_id):
    cart = carts.get(cart_id) or abort(404)
    owner = user()
    amount = sum(item["price"] for item in cart["items"])
    # The bug: a payment service that cannot be reached raises here.
    charged = requests.post(
        f"{PAYMENT}/charge", json={"user": owner, "amount": amount}, timeout=TIMEOUT
    )
    if charged.status_code != 200:
        return jsonify(error="payment declined"), 502
    return jsonify(paid=amount)


@app.post("/reset")
def reset():
    global ids
    carts.clear()
    ids = itertools.count(1)
    return "", 204


if __name__ == "__main__":
    app.run(port=5401, threaded=False)
