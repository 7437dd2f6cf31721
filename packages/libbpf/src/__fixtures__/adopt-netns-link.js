// Second process for the netns-link pin test: adopts the pinned link, reports what the
// kernel says about it, then detaches it (which also removes the pin).
const path = require('node:path');
const lib = require(path.join(__dirname, '..', 'index.ts'));

const link = lib.BpfLink.fromPin(process.argv[2]);
const info = link.info();
link.detach();
console.log(JSON.stringify({ id: info.id, type: info.type, attachType: info.attachType, netnsIno: info.netnsIno }));
