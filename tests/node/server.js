// A small node-opcua server for the interoperability test: a folder of Double, UInt16 and Double-array variables
// that change every 100 ms. usage: node server.js PORT   (prints "ready" when listening)
const { OPCUAServer, Variant, DataType } = require("node-opcua");

async function main() {
  const port = Number(process.argv[2]);
  const server = new OPCUAServer({ port, resourcePath: "/aidc", serverCapabilities: { operationLimits: { maxNodesPerRead: 3 } } });
  await server.initialize();
  const ns = server.engine.addressSpace.registerNamespace("urn:aidc:node-peer");
  const folder = ns.addObject({ organizedBy: server.engine.addressSpace.rootFolder.objects, browseName: "rack-n1" });
  let t = 0;
  const vars = {
    Power: () => new Variant({ dataType: DataType.Double, value: 100000 + t }),
    Temp: () => new Variant({ dataType: DataType.Double, value: 30 + (t % 10) / 10 }),
    Throttled: () => new Variant({ dataType: DataType.UInt16, value: 0 }),
    GpuTemp: () => new Variant({ dataType: DataType.Double, arrayType: 1, value: new Float64Array([50 + (t % 5), 51, 52, 53]) }),
  };
  for (const [name, get] of Object.entries(vars)) {
    ns.addVariable({ componentOf: folder, browseName: name, nodeId: `s=rack-n1.${name}`,
      dataType: name === "Throttled" ? "UInt16" : "Double", valueRank: name === "GpuTemp" ? 1 : -1,
      minimumSamplingInterval: 50, value: { get } });
  }
  setInterval(() => { t += 1; }, 100);
  await server.start();
  console.log(`ready ns=${ns.index}`);
}

main().catch((err) => {
  console.error(String(err));
  process.exit(1);
});
