"""baz: the end of the chain."""
from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/health-check", methods=["GET"])
def health_check():
    return jsonify({"status": "OK"})


@app.route("/baz", methods=["GET"])
def baz():
    return "baz"


if __name__ == "__main__":
    app.run(port=5002, host="0.0.0.0")
