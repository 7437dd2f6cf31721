#!/usr/bin/env bash
# Copies what the agent runs out of a built workspace into <out> (the image's /opt/shunt): the
# production dependency closure of @shunt/agent as the lockfile resolved it (`npm ls --omit=dev`,
# so no test harness, compiler or dev tool), each workspace package's package.json + dist (and
# the libbpf addon), and the BPF objects. Nothing is downloaded or compiled here.
# Usage: deploy/image/stage.sh <out-dir>   (run from a workspace where `npm run build` was done)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
die() { echo "stage.sh: $*" >&2; exit 1; }
[ -f "$root/packages/agent/dist/cli.js" ] || die "packages/agent/dist is missing: build first"
[ -f "$root/packages/libbpf/build/Release/shunt_libbpf.node" ] || die "the libbpf addon is not built"
ls "$root"/bpf/build/*/*.bpf.o >/dev/null 2>&1 || die "bpf/build has no objects: make -C bpf"
rm -rf "$out"; mkdir -p "$out/node_modules"
cp "$root/package.json" "$out/"

# Every installed path of the agent's production closure (absolute, one per line, deduplicated).
mapfile -t deps < <(cd "$root" && npm ls --parseable --all --omit=dev --workspace @shunt/agent 2>/dev/null | sort -u)
[ "${#deps[@]}" -gt 10 ] || die "npm ls found no dependency closure for @shunt/agent"
for dep in "${deps[@]}"; do
  # Hoisted (node_modules/…) or nested under a workspace package (packages/core/node_modules/…).
  case "$dep" in "$root"/node_modules/* | "$root"/packages/*/node_modules/*) ;; *) continue ;; esac
  rel=${dep#"$root"/}
  if [ -L "$dep" ]; then
    # A workspace package: its package.json and build output, linked as npm links it.
    pkg=$(cd "$root" && realpath --relative-to=. "$dep")
    mkdir -p "$out/$pkg" "$(dirname "$out/$rel")"
    cp "$root/$pkg/package.json" "$out/$pkg/"
    # Runtime files only: no declarations or source maps (the image runs no type checker).
    if [ -d "$root/$pkg/dist" ]; then
      tar -C "$root/$pkg" -cf - --exclude='*.d.ts' --exclude='*.map' --exclude='*.test.js' dist | tar -C "$out/$pkg" -xf -
    fi
    ln -sfn "$(realpath --relative-to="$(dirname "$out/$rel")" "$out/$pkg")" "$out/$rel"
    continue
  fi
  # Nested node_modules are listed on their own; copy each package without them.
  mkdir -p "$out/$rel"
  tar -C "$dep" -cf - --exclude=./node_modules . | tar -C "$out/$rel" -xf -
done
# Type declarations and source maps are never read at run time (node runs without
# --enable-source-maps): about a third of @kubernetes/client-node.
find "$out/node_modules" "$out"/packages/*/node_modules -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \) -delete 2>/dev/null || true
# The addon (built against the system libbpf, which the image installs) and the BPF objects.
mkdir -p "$out/packages/libbpf/build/Release" "$out/bpf"
cp "$root/packages/libbpf/build/Release/shunt_libbpf.node" "$out/packages/libbpf/build/Release/"
cp "$root/bpf/package.json" "$out/bpf/"
(cd "$root/bpf" && find build -name '*.bpf.o' -print0 | tar -cf - --null -T -) | tar -C "$out/bpf" -xf -
# The agent must not reach the testbed, the lab or dev tools.
for banned in @shunt/testbed @shunt/lab typescript jest nx; do
  [ ! -e "$out/node_modules/$banned" ] || die "$banned ended up in the production copy"
done
chmod 0755 "$out/packages/agent/dist/cli.js"
