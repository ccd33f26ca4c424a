// Independent OPC-UA peer for bench/collect.py: node-opcua reads the same nodes the same way (one session,
// reads split to MaxNodesPerRead, ROUNDS rounds) and prints CPU microseconds per value (array elements count)
// and the number of values read on a line starting "result" (node-opcua may log after it). A "|" argument
// separates node groups (one per device): a read never spans two groups, as in the collector. One untimed
// warm-up round runs first (JIT, session caches), as on the Python side.
// usage: node client.js ENDPOINT ROUNDS MAX_NODES NODEID... [| NODEID...]...
const { OPCUAClient, AttributeIds } = require("node-opcua");

async function main() {
  const [endpoint, roundsText, maxText, ...args] = process.argv.slice(2);
  const rounds = Number(roundsText), maxNodes = Number(maxText);
  const client = OPCUAClient.create({ endpointMustExist: false, connectionStrategy: { maxRetry: 1 } });
  await client.connect(endpoint);
  const session = await client.createSession();
  const groups = [[]];
  for (const a of args) {
    if (a === "|") groups.push([]);
    else groups[groups.length - 1].push(a);
  }
  const chunks = [];
  for (const ids of groups) {
    for (let i = 0; i < ids.length; i += maxNodes) {
      chunks.push(ids.slice(i, i + maxNodes).map((nodeId) => ({ nodeId, attributeId: AttributeIds.Value })));
    }
  }
  async function round() {
    let n = 0;
    for (const c of chunks) {
      const dvs = await session.read(c);
      for (const dv of dvs) {
        const v = dv.value.value;
        n += v !== null && typeof v === "object" && "length" in v ? v.length : 1;
      }
    }
    return n;
  }
  await round();
  let values = 0;
  const start = process.cpuUsage();
  for (let r = 0; r < rounds; r++) values += await round();
  const used = process.cpuUsage(start);
  console.log("result", ((used.user + used.system) / values).toFixed(3), values);
  await session.close();
  await client.disconnect();
}

main().catch((err) => {
  console.error(String(err));
  process.exit(1);
});
