#!/usr/bin/env bash
# `npm run test:image`: builds the image (deploy/image/build.sh) and runs its smoke test with podman
# (packages/lab/src/image/smoke.image.test.ts). Results: build/image/smoke.json, capabilities.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bash "$root/deploy/image/tools.sh" --run
[ "${SHUNT_IMAGE_SKIP_BUILD:-}" = 1 ] || bash "$root/deploy/image/build.sh"
cd "$root/packages/lab"
SHUNT_IMAGE_TEST=1 npx jest src/image "$@"
