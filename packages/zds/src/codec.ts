/**
 * Encoding and decoding of the ZDS messages with protobufjs, from proto/zds.proto (shipped with
 * the package). Decoding checks shapes: a message with no payload, or an Add without a uid, is a
 * ZdsProtocolError naming what was wrong, never a half-filled object.
 */
import * as path from 'node:path';
import * as protobuf from 'protobufjs';

export const ZDS_VERSION_V1 = 1;

export interface WorkloadInfo {
  name: string;
  namespace: string;
  serviceAccount: string;
}

export type WorkloadRequest =
  | { type: 'add'; uid: string; workloadInfo?: WorkloadInfo }
  | { type: 'keep'; uid: string }
  | { type: 'del'; uid: string }
  | { type: 'snapshotSent' };

/** ztunnel's answer; error '' is an ACK, anything else a NACK with ztunnel's reason. */
export interface Ack {
  error: string;
}

export class ZdsProtocolError extends Error {
  override readonly name = 'ZdsProtocolError';
}

const PROTO = path.resolve(__dirname, '..', 'proto', 'zds.proto');
let types: { hello: protobuf.Type; request: protobuf.Type; response: protobuf.Type } | undefined;

function load(): NonNullable<typeof types> {
  if (!types) {
    const root = protobuf.loadSync(PROTO);
    types = {
      hello: root.lookupType('istio.workload.zds.ZdsHello'),
      request: root.lookupType('istio.workload.zds.WorkloadRequest'),
      response: root.lookupType('istio.workload.zds.WorkloadResponse'),
    };
  }
  return types;
}

function decodeWith(t: protobuf.Type, data: Uint8Array, what: string): Record<string, unknown> {
  try {
    return t.toObject(t.decode(data), { defaults: true, oneofs: true, enums: Number }) as Record<string, unknown>;
  } catch (err) {
    throw new ZdsProtocolError(`cannot decode ${what} (${data.length} bytes): ${(err as Error).message}`);
  }
}

export function encodeHello(version = ZDS_VERSION_V1): Buffer {
  const t = load().hello;
  return Buffer.from(t.encode(t.create({ version })).finish());
}

export function decodeHello(data: Uint8Array): { version: number } {
  const o = decodeWith(load().hello, data, 'ZdsHello');
  return { version: Number(o.version) };
}

export function encodeRequest(req: WorkloadRequest): Buffer {
  const t = load().request;
  let body: Record<string, unknown>;
  switch (req.type) {
    case 'add':
      body = { add: { uid: req.uid, ...(req.workloadInfo ? { workloadInfo: req.workloadInfo } : {}) } };
      break;
    case 'keep':
      body = { keep: { uid: req.uid } };
      break;
    case 'del':
      body = { del: { uid: req.uid } };
      break;
    case 'snapshotSent':
      body = { snapshotSent: {} };
      break;
  }
  return Buffer.from(t.encode(t.fromObject(body)).finish());
}

export function decodeRequest(data: Uint8Array): WorkloadRequest {
  const o = decodeWith(load().request, data, 'WorkloadRequest');
  const uidOf = (m: unknown, kind: string): string => {
    const uid = (m as { uid?: unknown } | undefined)?.uid;
    if (typeof uid !== 'string' || uid === '') throw new ZdsProtocolError(`${kind} without a uid`);
    return uid;
  };
  switch (o.payload) {
    case 'add': {
      const add = o.add as { workloadInfo?: WorkloadInfo | null };
      return { type: 'add', uid: uidOf(o.add, 'AddWorkload'), ...(add.workloadInfo ? { workloadInfo: add.workloadInfo } : {}) };
    }
    case 'keep':
      return { type: 'keep', uid: uidOf(o.keep, 'KeepWorkload') };
    case 'del':
      return { type: 'del', uid: uidOf(o.del, 'DelWorkload') };
    case 'snapshotSent':
      return { type: 'snapshotSent' };
    default:
      throw new ZdsProtocolError('WorkloadRequest without a payload');
  }
}

export function encodeAck(error = ''): Buffer {
  const t = load().response;
  return Buffer.from(t.encode(t.fromObject({ ack: { error } })).finish());
}

export function decodeResponse(data: Uint8Array): Ack {
  const o = decodeWith(load().response, data, 'WorkloadResponse');
  if (o.payload !== 'ack') throw new ZdsProtocolError('WorkloadResponse without an ack');
  return { error: String((o.ack as { error?: unknown }).error ?? '') };
}
