"""inventory: prices of what the shop sells."""
from flask import Flask, jsonify
from werkzeug.exceptions import NotFound

app = Flask(__name__)

PRICES = {"book": 12, "pen": 2}


@app.get("/items/<sku>")
def item(sku):
    if sku not in PRICES:
        raise NotFound
    return jsonify(sku=sku, price=PRICES[sku])


if __name__ == "__main__":
    app.run(port=5403, threaded=False)
