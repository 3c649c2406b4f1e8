// cart, the polyglot example's Node.js service: GET /cart/{user} answers
// the user's cart, with the stock that inventory (Python) reports over
// gRPC.
//
// Run as `node server.js buggy` to have the seeded bug: when inventory
// fails, cart still answers 200, with `items: null`, which gateway cannot
// check out.
"use strict";

const http = require("node:http");
const grpc = require("@grpc/grpc-js");

const BUGGY = process.argv[2] === "buggy";
const PORT = 5001;
const INVENTORY = "127.0.0.1:5002";
const INVENTORY_DEADLINE_MS = 300;

// JSON messages instead of protobuf, so the example needs no codegen.
const encode = (message) => Buffer.from(JSON.stringify(message));
const decode = (bytes) => JSON.parse(bytes.toString());
const Inventory = grpc.makeGenericClientConstructor(
  {
    getStock: {
      path: "/shop.Inventory/GetStock",
      requestStream: false,
      responseStream: false,
      requestSerialize: encode,
      requestDeserialize: decode,
      responseSerialize: encode,
      responseDeserialize: decode,
    },
  },
  "Inventory",
);
const inventory = new Inventory(INVENTORY, grpc.credentials.createInsecure());

function reply(response, status, body) {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(JSON.stringify(body));
}

const server = http.createServer((request, response) => {
  const match = request.url.match(/^\/cart\/(\w+)$/);
  if (!match) {
    reply(response, 404, { error: "no such route" });
    return;
  }
  const user = match[1];
  const deadline = Date.now() + INVENTORY_DEADLINE_MS;
  inventory.getStock({ item: "popcorn" }, { deadline }, (error, stock) => {
    if (error) {
      if (BUGGY) {
        reply(response, 200, { user, items: null });
      } else {
        reply(response, 503, { error: `inventory: ${grpc.status[error.code]}` });
      }
      return;
    }
    reply(response, 200, {
      user,
      items: [{ item: "popcorn", quantity: 2, in_stock: stock.count }],
    });
  });
});
server.listen(PORT, "127.0.0.1", () => console.error(`cart listening on ${PORT}`));
