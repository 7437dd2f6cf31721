#!/usr/bin/env bash
# This machine's Debian mirrors, as its own apt configuration has them (one-line and deb822 sources
# alike, through `apt-get indextargets`), so no mirror host is ever written into the repository.
#   mirrors.sh                 MAIN_MIRROR=… and SECURITY_MIRROR=… lines (build.sh reads them)
#   mirrors.sh --docker-args   the Dockerfile's build arguments: docker build $(deploy/image/mirrors.sh --docker-args) .
set -euo pipefail
targets=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Created-By: Packages' | sort -u)
main=$(awk '$2 !~ /-/ { print $1; exit }' <<<"$targets")
security=$(awk '$2 ~ /-security$/ { print $1; exit }' <<<"$targets")
[ -n "$main" ] || { echo "mirrors.sh: no Debian mirror in this machine's apt sources (apt-get indextargets)" >&2; exit 1; }
if [ "${1:-}" = --docker-args ]; then
  echo "--build-arg DEBIAN_MIRROR=$main${security:+ --build-arg DEBIAN_SECURITY_MIRROR=$security}"
else
  echo "MAIN_MIRROR=$main"
  echo "SECURITY_MIRROR=$security"
fi
