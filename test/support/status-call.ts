import { credentials, Metadata } from '@grpc/grpc-js';
import { Kvs2Client, type StatusReply } from '../../src/gen/kvs2.js';

/** One Status call through the generated client, over the real wire. */
export async function statusOf(address: string): Promise<StatusReply> {
  const client = new Kvs2Client(address, credentials.createInsecure());
  try {
    return await new Promise<StatusReply>((resolve, reject) =>
      client.status({}, new Metadata(), { deadline: Date.now() + 5000 }, (error, reply) =>
        error ? reject(error) : resolve(reply),
      ),
    );
  } finally {
    client.close();
  }
}

/** Records behind the log's end over all partitions whose end the node knows. */
export function totalLag(reply: StatusReply): number {
  return reply.partitions.reduce((sum, p) => sum + Math.max(0, p.lagRecords), 0);
}
