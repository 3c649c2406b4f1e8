// The @grpc/grpc-js client of `cargo xtask bench --only reconnect`: one
// channel, unary calls, its connection destroyed (`ss -K`) before every
// fifth, then left idle for a millisecond (as between two executions) or,
// every other time, called at once; prints each call as [µs, failed, how:
// 0 as usual, 1 after a destroy and a pause, 2 at once after a destroy].
const { execFileSync } = require("child_process");
const grpc = require("@grpc/grpc-js");

const [port, count] = [process.argv[2], Number(process.argv[3])];
const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
const bytes = (b) => b;

function call() {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + 10000);
    client.makeUnaryRequest("/bench.Echo/Echo", bytes, bytes, Buffer.from("ping"), { deadline },
      (error) => resolve(Boolean(error)));
  });
}

(async () => {
  const calls = [];
  for (let n = 0; n < count; n++) {
    const how = n === 0 || n % 5 ? 0 : 1 + (Math.floor(n / 5) % 2);
    if (how) {
      execFileSync("ss", ["-K", "dst", "127.0.0.1", "dport", "=", port], { stdio: "ignore" });
    }
    if (how === 1) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const started = process.hrtime.bigint();
    const failed = await call();
    calls.push([Number((process.hrtime.bigint() - started) / 1000n), failed, how]);
  }
  console.log(JSON.stringify(calls));
  client.close();
})();
