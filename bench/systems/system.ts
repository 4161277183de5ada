/** A server the suite started: where it answers, which processes do its work, and how to stop it. */
export interface RunningSystem {
  /** Short name used in the results, e.g. `kvs2`, `etcd`, `redis-aof`. */
  readonly name: string;
  /** What an acknowledged write means on this system, in a few words. */
  readonly durability: string;
  /** Processes whose CPU time counts as the server's (e.g. kvs2 and its Kafka broker). */
  serverPids(): number[];
  stop(): Promise<void>;
}

export interface GrpcSystem extends RunningSystem {
  /** host:port on loopback. */
  readonly target: string;
}

export interface RedisSystem extends RunningSystem {
  readonly port: number;
}
