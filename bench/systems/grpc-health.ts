import { type ChannelCredentials, Client, credentials } from '@grpc/grpc-js';

/** grpc.health.v1.HealthCheckResponse for SERVING: field 1 (status) = 1. */
const SERVING = Buffer.from([0x08, 0x01]);

/** Whether the server's grpc.health.v1.Health/Check answers SERVING for the whole server (""). */
export function isServing(
  target: string,
  timeoutMs = 1_000,
  channelCredentials: ChannelCredentials = credentials.createInsecure(),
): Promise<boolean> {
  const client = new Client(target, channelCredentials);
  return new Promise<boolean>((resolve) => {
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.alloc(0),
      { deadline: Date.now() + timeoutMs },
      (error, reply) => resolve(error === null && reply !== undefined && reply.equals(SERVING)),
    );
  }).finally(() => client.close());
}
