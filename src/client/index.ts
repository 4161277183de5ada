// The public surface of `kvs2/client` (package.json exports): the promise client, its options and errors,
// and the protobuf message types its methods take and return. Everything else in the package is private.
export type {
  Condition,
  DeleteReply,
  DeleteRequest,
  GetReply,
  GetRequest,
  KeyValue,
  MultiGetReply,
  MultiGetRequest,
  MultiGetResponsePart,
  Mutation,
  MutationResult,
  PartitionStatus,
  ScanReply,
  ScanRequest,
  SetReply,
  SetRequest,
  StatusReply,
  StatusRequest,
  WatchEvent,
  WatchRequest,
  WriteReply,
  WriteRequest,
} from '../gen/kvs2.js';
export { ERROR_CODE_METADATA_KEY, SERVER_ERROR_CODES, type ServerErrorCode } from './client-error.js';
export * from './kvs2-client.js';
