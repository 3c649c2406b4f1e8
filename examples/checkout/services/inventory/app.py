"""inventory: stock per item."""
from flask import Flask, jsonify
from werkzeug.exceptions import NotFound

STOCK = {"widget": 3, "gadget": 0}

app = Flask(__name__)


@app.route("/stock/<item>")
def stock(item):
    if item not in STOCK:
        raise NotFound(f"no item {item}")
    return jsonify({"item": item, "count": STOCK[item]})


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5002)
