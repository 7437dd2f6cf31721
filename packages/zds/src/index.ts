// @shunt/zds: the ZDS protocol between the node agent and ztunnel.
export {
  encodeHello,
  decodeHello,
  encodeRequest,
  decodeRequest,
  encodeAck,
  decodeResponse,
  ZdsProtocolError,
  ZDS_VERSION_V1,
  type WorkloadInfo,
  type WorkloadRequest,
  type Ack,
} from './codec';
export { ZdsError, type ZdsErrorCode } from './errors';
export { ZdsServer, DEFAULT_ZDS_SOCKET, readZdsStatus, type ZdsServerOptions, type ZdsWorkload, type ZdsWorkloadStatus, type ZdsStatusFile, type ZdsLogger } from './server';
export { ZdsClient, type ZdsRequestHandler } from './client';
