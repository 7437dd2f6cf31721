#!/usr/bin/env bash
# Fetches the pinned Node runtime (deploy/image/image.env NODE_PACKAGE) with the ordinary npm client,
# checks its integrity and extracts the `node` binary to <out>/node. Usage: node.sh <out-dir> [cache-dir]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/image.env"
out=$1; cache=${2:-$out}
mkdir -p "$out" "$cache"
tgz=$cache/${NODE_PACKAGE/@/-}.tgz
if [ ! -s "$tgz" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$NODE_PACKAGE" >/dev/null)
  mv "$tmp"/*.tgz "$tgz"; rmdir "$tmp"
fi
got="sha512-$(node -e 'process.stdout.write(require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$tgz")"
[ "$got" = "$NODE_INTEGRITY" ] || { echo "node.sh: $tgz has integrity $got, expected $NODE_INTEGRITY" >&2; rm -f "$tgz"; exit 1; }
tar -xzf "$tgz" -C "$out" --strip-components=2 package/bin/node
"$out/node" --version >/dev/null
