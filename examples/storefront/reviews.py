"""Reviews of products."""
from fastapi import FastAPI

app = FastAPI()


@app.get("/reviews/{product_id}")
async def reviews(product_id: int):
    return [{"stars": 5, "text": "bright and steady"}] if product_id == 1 else []
