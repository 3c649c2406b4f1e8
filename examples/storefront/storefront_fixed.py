"""The storefront's product page: the product from catalog and its reviews
from reviews, fetched at once. Reviews are optional: without them the page
still shows the product."""
import asyncio
import os

import httpx
from fastapi import FastAPI, HTTPException

CATALOG_URL = os.environ.get("CATALOG_URL", "http://localhost:5041")
REVIEWS_URL = os.environ.get("REVIEWS_URL", "http://localhost:5042")

app = FastAPI()
# One client for the process: its pool keeps connections to both services.
client = httpx.AsyncClient(timeout=2.0)


async def fetch_reviews(product_id: int) -> list:
    try:
        response = await client.get(f"{REVIEWS_URL}/reviews/{product_id}")
        response.raise_for_status()
        return response.json()
    except httpx.HTTPError:
        # Reviews are down: show the product without them.
        return []


@app.get("/product/{product_id}")
async def product_page(product_id: int):
    product, reviews = await asyncio.gather(
        client.get(f"{CATALOG_URL}/items/{product_id}"),
        fetch_reviews(product_id),
        return_exceptions=True,
    )
    if isinstance(product, Exception) or product.status_code != 200:
        raise HTTPException(status_code=503, detail="catalog unavailable")
    if isinstance(reviews, Exception):
        raise reviews
    return {**product.json(), "reviews": reviews}
