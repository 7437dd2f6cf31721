#!/usr/bin/env bash
# Builds the agent's OCI image without a container engine or daemon, from Debian's packages:
#   1. mmdebstrap: a minimal root filesystem of the pinned Debian release (Essential packages plus
#      deploy/image/packages.txt, libbpf from <suite>-backports), as a tarball: the OS layer;
#   2. deploy/image/node.sh + stage.sh: the pinned Node binary (npm registry package) and what the
#      agent runs (dist, production node_modules, BPF objects, the addon): the app layer;
#   3. umoci: both layers and the config into an OCI image layout, plus an oci-archive of it.
# The package mirror is the one this machine's apt uses; none is written into the repository.
# Every timestamp is SOURCE_DATE_EPOCH (default: the last commit's time), so the same inputs give
# the same layers. Output (gitignored): build/image/oci (layout, tag $IMAGE_TAG) and
# build/image/$IMAGE_NAME-$IMAGE_TAG.oci.tar (`podman load -i …`, `skopeo copy oci-archive:… docker://…`).
# Usage: deploy/image/build.sh   (root; after `npm run build`)   Tools: apt-get install mmdebstrap umoci
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/image.env"
out=${SHUNT_IMAGE_DIR:-$root/build/image}
log() { printf '\033[1m[image]\033[0m %s\n' "$*"; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap installs packages into a chroot)"
bash "$here/tools.sh"
for t in mmdebstrap umoci npm node; do command -v "$t" >/dev/null || die "$t is missing"; done
started=$(date +%s)

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)   # read once: a commit meanwhile must not change it

eval "$("$here/mirrors.sh")"
main_mirror=$MAIN_MIRROR security_mirror=$SECURITY_MIRROR
sources="deb $main_mirror $DEBIAN_SUITE main
deb $main_mirror $DEBIAN_SUITE-updates main
deb $main_mirror $DEBIAN_SUITE-backports main"
[ -z "$security_mirror" ] || sources+="
deb $security_mirror $DEBIAN_SUITE-security main"
[ -n "$security_mirror" ] || log "warning: no security mirror in this machine's apt sources; the image gets no security updates"

# deploy/image/packages.txt: "<name>" from the release, "<name>/backports" from its backports.
include=$(sed -e 's/#.*//' -e '/^\s*$/d' "$here/packages.txt" | sed "s#/backports\$#/$DEBIAN_SUITE-backports#" | paste -sd, -)

# Downloaded .debs are kept (checked by apt against the signed release files on every build).
mkdir -p "$out/cache/debs"
work=$(mktemp -d "$out/work.XXXXXX")
trap 'rm -rf "$work"' EXIT

t0=$(date +%s)
log "OS layer: Debian $DEBIAN_SUITE (essential + $include)"
# Documentation, manuals and translations are not needed to run the agent.
mmdebstrap --quiet --mode=root --variant=essential --format=tar \
  --include="$include" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --skip=essential/unlink \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives' --setup-hook="sync-in $out/cache/debs /var/cache/apt/archives/" \
  --customize-hook="sync-out /var/cache/apt/archives $out/cache/debs" \
  --customize-hook='chroot "$1" dpkg-query -W -f="\${Package} \${Version}\n" > "$1/usr/share/shunt-image-packages.txt"' \
  --customize-hook='rm -rf "$1"/etc/apt/sources.list "$1"/etc/apt/sources.list.d/* "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/var/log/* "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id' \
  "$DEBIAN_SUITE" "$work/os.tar" - <<<"$sources"
tar -xOf "$work/os.tar" ./usr/share/shunt-image-packages.txt > "$out/packages.lock"
# No compiler, assembler or linker in the runtime image (gcc-12-base, a dependency of libgcc-s1, is only docs).
if tar -tf "$work/os.tar" | grep -E '^\./usr/bin/(cc|c\+\+|gcc|g\+\+|clang|ld|as|make)(-[0-9.]+)?$'; then die "a compiler or linker ended up in the runtime image"; fi

log "  OS layer took $(( $(date +%s) - t0 )) s"
log "app layer: $NODE_PACKAGE, /opt/shunt"
app=$work/app
mkdir -p "$app/usr/local/bin" "$app/opt"
"$here/node.sh" "$app/usr/local/bin" "$out/cache"
"$here/stage.sh" "$app/opt/shunt"
ln -s /opt/shunt/packages/agent/dist/cli.js "$app/usr/local/bin/shunt"
# Mount points of the chart's volumes exist in the image, so a read-only root works anywhere.
mkdir -p "$app/run/shunt" "$app/run/netns" "$app/host/sys/fs/cgroup"   # /var/run is /run in Debian: never a directory here
tar -C "$app" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -cf "$work/app.tar" .

log "OCI layout: $out/oci:$IMAGE_TAG"
rm -rf "$out/oci"
umoci init --layout "$out/oci"
umoci new --image "$out/oci:$IMAGE_TAG"
umoci raw add-layer --image "$out/oci:$IMAGE_TAG" --history.created "$created" --history.created_by "mmdebstrap $DEBIAN_SUITE: essential + $include" "$work/os.tar"
umoci raw add-layer --image "$out/oci:$IMAGE_TAG" --history.created "$created" --history.created_by "$NODE_PACKAGE; /opt/shunt (deploy/image/stage.sh)" "$work/app.tar"
umoci config --image "$out/oci:$IMAGE_TAG" --created "$created" --author "shunt" \
  --os linux --architecture amd64 \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.env NODE_ENV=production \
  --config.entrypoint /usr/local/bin/node --config.entrypoint --max-semi-space-size=8 --config.entrypoint --heap-growing-percent=30 --config.entrypoint /opt/shunt/packages/agent/dist/cli.js --config.cmd agent \
  --config.workingdir / \
  --config.label "org.opencontainers.image.title=$IMAGE_NAME" --config.label "org.opencontainers.image.version=$IMAGE_TAG" \
  --config.label "org.opencontainers.image.created=$created" \
  --config.label "org.opencontainers.image.revision=$revision" \
  --history.created "$created" --history.created_by "umoci config"
umoci gc --layout "$out/oci"
archive=$out/$IMAGE_NAME-$IMAGE_TAG.oci.tar
tar -C "$out/oci" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -cf "$archive" .

manifest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$out/oci/index.json")
layers=$(python3 -c '
import json,sys
d=sys.argv[1]; idx=json.load(open(d+"/index.json")); m=idx["manifests"][0]["digest"].split(":")[1]
man=json.load(open(d+"/blobs/sha256/"+m))
print(sum(l["size"] for l in man["layers"]))' "$out/oci")
printf '%s\n' "$manifest" > "$out/digest"
log "done in $(( $(date +%s) - started )) s: manifest $manifest, layers $(( layers / 1024 / 1024 )) MiB compressed"
log "  $archive  (podman load -i …; skopeo copy oci-archive:$archive docker://<registry>/$IMAGE_NAME:$IMAGE_TAG)"
