// @shunt/libbpf: N-API addon over the system libbpf and its typed TypeScript face: objects, programs, maps, links, pins, feature probes, netns cookies and the SO_ORIGINAL_DST getsockopt.
export {};
