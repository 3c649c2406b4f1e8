"""The catalog: what each product is."""
from fastapi import FastAPI, HTTPException

app = FastAPI()

ITEMS = {1: {"id": 1, "name": "desk lamp", "price": 39.5}}


@app.get("/items/{item_id}")
async def item(item_id: int):
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail="no such item")
    return ITEMS[item_id]
