// Load a TensorFlow.js layers model from disk with real @tensorflow/tfjs and print its predictions as JSON.
// usage: node tfjs_predict.js model.json inputs.json   (inputs: [{"data": [...], "shape": [...], "dtype": "float32"}])
const tf = require('@tensorflow/tfjs');
const fs = require('fs');
const path = require('path');

async function main() {
  const [modelPath, inputPath] = process.argv.slice(2);
  const manifest = JSON.parse(fs.readFileSync(modelPath, 'utf8'));
  const folder = path.dirname(modelPath);
  const weightSpecs = [];
  const shards = [];
  for (const group of manifest.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const shard of group.paths) shards.push(fs.readFileSync(path.join(folder, shard)));
  }
  const data = Buffer.concat(shards);
  const weightData = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  const handler = {load: async () => ({modelTopology: manifest.modelTopology, weightSpecs, weightData, format: manifest.format})};
  const model = await tf.loadLayersModel(handler);
  const inputs = JSON.parse(fs.readFileSync(inputPath, 'utf8')).map(i => tf.tensor(i.data, i.shape, i.dtype));
  let outputs = model.predict(inputs.length === 1 ? inputs[0] : inputs);
  if (!Array.isArray(outputs)) outputs = [outputs];
  process.stdout.write(JSON.stringify(outputs.map(y => ({shape: y.shape, data: Array.from(y.dataSync())}))));
}

main().catch(error => { console.error(error.stack || String(error)); process.exit(1); });
