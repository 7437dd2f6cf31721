// Second process for the pin/adopt test: adopts the maps and link a previous process
// pinned, reports what it found ("inspect"), or detaches and unpins them ("cleanup").
const path = require('node:path');
const lib = require(path.join(__dirname, '..', 'index.ts'));

const [mode, objectPath, pinDir] = process.argv.slice(2);
const linkPin = path.join(pinDir, 'connect4_link');
const mapsDir = path.join(pinDir, 'maps');

function u32(n) {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

if (mode === 'inspect') {
  // Reopening the object must reuse the pinned map, not create a fresh one.
  const obj = lib.BpfObject.open(objectPath, { pinMaps: mapsDir });
  const viaObject = obj.map('pinned_state');
  const viaPin = lib.BpfMap.fromPin(path.join(mapsDir, 'pinned_state'));
  const link = lib.BpfLink.fromPin(linkPin);
  const info = link.info();
  console.log(
    JSON.stringify({
      objectMapId: viaObject.id,
      pinMapId: viaPin.id,
      value7: viaPin.lookup(u32(7))?.readBigUInt64LE(0).toString() ?? null,
      link: { id: info.id, type: info.type, attachType: info.attachType, progId: info.progId },
    }),
  );
  link.close(); // dropping an adopted handle must not detach a pinned link
  viaPin.close();
  obj.close();
} else if (mode === 'cleanup') {
  const link = lib.BpfLink.fromPin(linkPin);
  link.detach(); // detaches and removes the pin it was adopted from
  const map = lib.BpfMap.fromPin(path.join(mapsDir, 'pinned_state'));
  map.unpin();
  map.close();
  console.log(JSON.stringify({ done: true }));
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
