#!/usr/bin/env bash
# Installs the Debian packages the image build (and, with --run, its smoke test) uses, if missing.
# Usage: deploy/image/tools.sh [--run]
set -euo pipefail
pkgs=(mmdebstrap umoci)
# runc, not only crun: crun 1.8 refuses hosts with a hybrid cgroup layout (see packages/lab/src/image/podman.ts).
[ "${1:-}" != "--run" ] || pkgs+=(podman runc)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  printf '\033[1m[image]\033[0m installing: %s\n' "${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
