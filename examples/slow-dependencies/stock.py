"""stock: how many of an item are left."""
from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/stock/<item>")
def stock(item):
    return jsonify(item=item, count=7)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5501, threaded=True)
