"""shop: an order page, from stock and pricing. Each call waits up to 2 s,
which either one alone always fits in."""
import os
from concurrent.futures import ThreadPoolExecutor

import requests
from flask import Flask, jsonify

STOCK = "http://localhost:5501"
PRICING = "http://localhost:5502"
TIMEOUT = 2.0
# The bug: stock, then pricing, one after the other; slow together, they
# take longer than the shop's own callers wait (3 s). The fixed shop asks
# both at once.
AT_ONCE = os.environ.get("AT_ONCE") == "1"

app = Flask(__name__)


def get(url):
    response = requests.get(url, timeout=TIMEOUT)
    response.raise_for_status()
    return response.json()


@app.route("/orders/<item>")
def order(item):
    urls = [f"{STOCK}/stock/{item}", f"{PRICING}/prices/{item}"]
    if AT_ONCE:
        with ThreadPoolExecutor(max_workers=2) as pool:
            stock, price = pool.map(get, urls)
    else:
        stock, price = get(urls[0]), get(urls[1])
    return jsonify(item=item, available=stock["count"] > 0, price=price["amount"])


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5500, threaded=True)
