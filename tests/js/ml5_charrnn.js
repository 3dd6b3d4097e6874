// Run an ml5.js charRNN manifest's LSTM cells the way ml5's CharRNN does, with real @tensorflow/tfjs, on a batch
// of input vectors (the embedding bypassed), and print every step's top output and each cell's final state.
// usage: node ml5_charrnn.js manifest.json inputs.json   (inputs: {"data": [...], "shape": [batch, time, width]})
// As ml5: each file is a raw Float32Array of its manifest shape (deeplearn.js CheckpointLoader); a variable
// whose name holds cell_N is that cell's kernel (weights|kernel) or bias; each cell is
// tf.basicLSTMCell(forgetBias = 1.0, kernel, bias, data, c, h), the cells stacked in order.
const tf = require('@tensorflow/tfjs');
const fs = require('fs');
const path = require('path');

function main() {
  const [manifestPath, inputPath] = process.argv.slice(2);
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  const folder = path.dirname(manifestPath);
  const kernels = {};
  const biases = {};
  for (const [name, entry] of Object.entries(manifest)) {
    const cell = name.match(/cell_([0-9]+)/);
    if (!cell) continue;
    const bytes = fs.readFileSync(path.join(folder, entry.filename));
    const values = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    const tensor = tf.tensor(values, entry.shape);
    if (name.match(/weights|kernel/)) kernels[cell[1]] = tensor; else if (name.match(/bias/)) biases[cell[1]] = tensor;
  }
  const count = Object.keys(kernels).length;
  const feed = JSON.parse(fs.readFileSync(inputPath, 'utf8'));
  const x = tf.tensor(feed.data, feed.shape, 'float32');
  const [batch, steps] = feed.shape;
  const forgetBias = tf.tensor(1.0);
  const c = [];
  const h = [];
  for (let i = 0; i < count; i += 1) {
    c.push(tf.zeros([batch, biases[i].shape[0] / 4]));
    h.push(tf.zeros([batch, biases[i].shape[0] / 4]));
  }
  const outputs = [];
  for (let t = 0; t < steps; t += 1) {
    let data = x.slice([0, t, 0], [batch, 1, feed.shape[2]]).reshape([batch, feed.shape[2]]);
    for (let i = 0; i < count; i += 1) {
      [c[i], h[i]] = tf.basicLSTMCell(forgetBias, kernels[i], biases[i], data, c[i], h[i]);
      data = h[i];
    }
    outputs.push(data);
  }
  const y = tf.stack(outputs, 1);
  const dump = (v) => ({shape: v.shape, data: Array.from(v.dataSync())});
  process.stdout.write(JSON.stringify({y: dump(y), h: dump(tf.stack(h, 1)), c: dump(tf.stack(c, 1))}));
}

main();
