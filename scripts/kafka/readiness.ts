/**
 * The ids of the registered, unfenced brokers in the cluster metadata served by the broker at `address`,
 * or an empty list when it does not answer yet. A broker that answers a Metadata request listing itself
 * has joined the cluster and accepts requests: that is what "ready" means here.
 */
export async function registeredBrokers(address: string): Promise<number[]> {
  // Loaded on first use: the client takes most of the CLI's start-up, and only `up` and `start-broker` need it.
  const { Admin } = await import('@platformatic/kafka');
  const admin = new Admin({
    clientId: 'kvs2-kafka-readiness',
    bootstrapBrokers: [address],
    retries: 0,
    timeout: 5_000,
    connectTimeout: 2_000,
  });
  try {
    const metadata = await admin.metadata({ topics: [], forceUpdate: true });
    return [...metadata.brokers.keys()];
  } catch {
    return [];
  } finally {
    await admin.close().catch(() => {});
  }
}
