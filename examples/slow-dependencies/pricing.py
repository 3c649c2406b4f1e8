"""pricing: what an item costs."""
from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/prices/<item>")
def price(item):
    return jsonify(item=item, amount=1250)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5502, threaded=True)
