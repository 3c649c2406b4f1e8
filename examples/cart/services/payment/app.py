"""payment: charges a user."""
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/charge")
def charge():
    body = request.get_json(force=True)
    return jsonify(charged=body["amount"], user=body["user"])


if __name__ == "__main__":
    app.run(port=5402, threaded=False)
