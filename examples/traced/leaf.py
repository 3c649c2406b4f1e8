"""leaf: answers."""
from flask import Flask

app = Flask(__name__)


@app.route("/leaf")
def leaf():
    return "ok"


app.run(host="127.0.0.1", port=5001, threaded=True)
