# shunt node agent image.
#
#   docker build -t ghcr.io/shunt-mesh/shunt:0.1.0 .
#
# Stage 1 builds the eBPF objects (clang-16 against a vmlinux.h generated from the build
# host's /sys/kernel/btf/vmlinux; CO-RE relocates them on each node), the libbpf N-API
# addon and the TypeScript packages. Stage 2 is Node 20 with only what the agent runs at
# run time: the system libbpf (>= 1.3 for tcx links, from bookworm-backports), iptables
# (legacy and nft) and iproute2. Nothing is compiled on the node.
# Not built in this repository's CI (no container engine there).

ARG NODE_IMAGE=node:20-bookworm
ARG NODE_RUNTIME_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/backports.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends clang-16 llvm-16 libelf-dev zlib1g-dev pkg-config make g++ python3 \
 && apt-get install -y --no-install-recommends -t bookworm-backports libbpf-dev libbpf1 bpftool \
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
COPY packages/libbpf/package.json packages/libbpf/
COPY packages/netlink/package.json packages/netlink/
COPY packages/testbed/package.json packages/testbed/
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY bpf bpf
COPY packages packages
RUN NX_DAEMON=false NX_NO_CLOUD=true npx nx run-many -t build --outputStyle=stream \
 && npm prune --omit=dev --no-audit --no-fund \
 && mkdir -p /out/packages \
 && cp -a node_modules package.json /out/ \
 && mkdir -p /out/bpf && cp -a bpf/build bpf/package.json /out/bpf/ \
 && for p in packages/*; do \
      mkdir -p /out/$p && cp -a $p/package.json $p/dist /out/$p/ \
      && if [ -d $p/build ]; then cp -a $p/build /out/$p/; fi \
      && if [ -d $p/node_modules ]; then cp -a $p/node_modules /out/$p/; fi; \
    done

FROM ${NODE_RUNTIME_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/backports.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends iptables iproute2 util-linux libelf1 zlib1g ca-certificates \
 && apt-get install -y --no-install-recommends -t bookworm-backports libbpf1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out /opt/shunt
RUN ln -s /opt/shunt/packages/agent/dist/cli.js /usr/local/bin/shunt && chmod +x /opt/shunt/packages/agent/dist/cli.js
ENV NODE_ENV=production
# The chart runs `shunt agent …`; `kubectl exec … -- shunt doctor|status|cleanup` also work.
ENTRYPOINT ["node", "/opt/shunt/packages/agent/dist/cli.js"]
CMD ["agent"]
