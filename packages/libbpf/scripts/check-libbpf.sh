#!/bin/sh
# Prints libbpf's compiler or linker flags for binding.gyp, after checking the version:
# tcx sections and attach need libbpf >= 1.3 (Debian 12 ships 1.1; take 1.4 from
# bookworm-backports via scripts/setup.sh).
set -e
need_major=1
need_minor=3
if ! version=$(pkg-config --modversion libbpf 2>/dev/null); then
  echo "@shunt/libbpf: libbpf not found by pkg-config; install libbpf-dev >= $need_major.$need_minor (run scripts/setup.sh)" >&2
  exit 1
fi
major=${version%%.*}
rest=${version#*.}
minor=${rest%%.*}
if [ "$major" -lt "$need_major" ] || { [ "$major" -eq "$need_major" ] && [ "$minor" -lt "$need_minor" ]; }; then
  echo "@shunt/libbpf: libbpf $version is too old; need >= $need_major.$need_minor for tcx (bpf_program__attach_tcx). Install libbpf-dev from bookworm-backports (scripts/setup.sh)." >&2
  exit 1
fi
case "$1" in
  cflags) pkg-config --cflags libbpf ;;
  libs) pkg-config --libs libbpf ;;
  *) echo "usage: check-libbpf.sh cflags|libs" >&2; exit 2 ;;
esac
