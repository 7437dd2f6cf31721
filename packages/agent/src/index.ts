// @shunt/agent: The `shunt` daemon and CLI: wiring, metrics/health HTTP, `doctor`, `status`, `cleanup`, `demo`, `bench`.
export {};
