#!/usr/bin/env bash
# One-command, idempotent set-up of a fresh machine: system packages, bpffs, npm deps, builds.
# Usage: scripts/setup.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: shunt loads eBPF programs and creates network namespaces"

APT_PKGS=(clang-16 llvm-16 libelf-dev zlib1g-dev pkg-config iproute2 iptables haproxy sockperf iperf3 wrk conntrack procps util-linux
          golang-go golang-github-masterminds-sprig-dev)   # go + sprig: render the Helm chart in tests (no helm here)
BACKPORT_PKGS=(libbpf-dev libbpf1 bpftool)
MIN_LIBBPF_MINOR=3   # tcx attach (bpf_program__attach_tcx) is LIBBPF_1.3.0

libbpf_ok() {
  local v; v=$(pkg-config --modversion libbpf 2>/dev/null) || return 1
  [ "${v%%.*}" -ge 1 ] && [ "$(echo "$v" | cut -d. -f2)" -ge "$MIN_LIBBPF_MINOR" ]
}

missing=()
for p in "${APT_PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
# kubectl checks test/fake-apiserver in core's tests (Debian's kubernetes-client); any kubectl already
# on PATH will do, and installing Debian's over another package's /usr/bin/kubectl would conflict.
command -v kubectl >/dev/null || missing+=(kubernetes-client)
if [ ${#missing[@]} -gt 0 ] || ! libbpf_ok || ! command -v bpftool >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  # libbpf >= 1.3 lives in <codename>-backports on Debian 12; reuse the mirror this machine already uses.
  if [ -n "$codename" ] && ! grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=$(grep -rhs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1 || true)
    [ -n "$mirror" ] || mirror=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -1 || true)
    [ -n "$mirror" ] || die "cannot find the Debian mirror in /etc/apt sources to add ${codename}-backports"
    log "adding ${codename}-backports from $mirror"
    echo "deb $mirror ${codename}-backports main" > /etc/apt/sources.list.d/shunt-backports.list
  fi
  log "apt-get update"
  apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! libbpf_ok || ! command -v bpftool >/dev/null; then
    log "installing from ${codename}-backports: ${BACKPORT_PKGS[*]}"
    apt-get install -y -qq --no-install-recommends -t "${codename}-backports" "${BACKPORT_PKGS[@]}" >/dev/null
  fi
fi
libbpf_ok || die "libbpf >= 1.${MIN_LIBBPF_MINOR} is required (found $(pkg-config --modversion libbpf 2>/dev/null || echo none))"
log "libbpf $(pkg-config --modversion libbpf), $(bpftool version | head -1), $(clang-16 --version | head -1)"

if ! grep -qs ' /sys/fs/bpf bpf ' /proc/mounts; then
  log "mounting bpffs at /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi
grep -qs ' cgroup2 ' /proc/mounts || die "no cgroup v2 mount found in /proc/mounts"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ "${1:-}" != "--no-build" ]; then
  log "building bpf objects, the addon and all packages"
  NX_DAEMON=false NX_NO_CLOUD=true npx nx run-many -t build --outputStyle=stream
fi
log "done"
