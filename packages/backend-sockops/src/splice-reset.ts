/**
 * Resets the connection of a spliced socket closed with unread data, as TCP does: the resetter is
 * shared with the tc backend and lives in @shunt/libbpf (src/splice-reset.ts says how and why).
 * Re-exported here so this package's modules and tests keep their imports.
 */
export { RESET_EVENT_BYTES, SpliceResetter, decodeResetEvent, type SpliceResetEvent, type SpliceResetStats, type SpliceResetterOptions } from '@shunt/libbpf';
