// An independent client for weir's blob tests: the Azure SDK for JavaScript.
//   node azure-blob.cjs create CONNECTION_STRING CONTAINER
//   node azure-blob.cjs dump CONNECTION_STRING CONTAINER     -> {"name": "content", ...}
// Resolved through NODE_PATH=$WEIR_TOOLS/node/node_modules (scripts/test.sh installs it).
const { BlobServiceClient } = require("@azure/storage-blob");

async function main() {
  const [command, connection, name] = process.argv.slice(2);
  const container = BlobServiceClient.fromConnectionString(connection).getContainerClient(name);
  if (command === "create") {
    await container.createIfNotExists();
  } else if (command === "dump") {
    const objects = {};
    for await (const blob of container.listBlobsFlat()) {
      objects[blob.name] = (await container.getBlobClient(blob.name).downloadToBuffer()).toString("utf8");
    }
    process.stdout.write(JSON.stringify(objects));
  } else {
    throw new Error(`unknown command ${command}`);
  }
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
