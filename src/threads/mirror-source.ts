import type { Replica } from '../replica/replica.js';
import { packRecords } from './record-packing.js';
import { type MirrorMessage, toEntries } from './thread-messages.js';

/**
 * The owner's side of ReplicaMirror: every commit (with its records, for watches), reset and restart of
 * the replica, as MirrorMessages to `send`. Subscribe before any reading thread reads the replica's state,
 * so that no change falls in between. Returns the unsubscribe.
 */
export function mirrorReplica(replica: Replica, send: (message: MirrorMessage) => void): () => void {
  const stops = [
    replica.changes.subscribe((change) => {
      if (change.kind === 'reset') send({ type: 'reset', reason: change.reason });
      else send({ type: 'applied', next: toEntries(change.nextOffsets), records: packRecords(change.records) });
    }).unsubscribe,
    replica.onRestart(() => send({ type: 'restart', identity: replica.watermark.logIdentity })),
  ];
  return () => {
    for (const stop of stops) stop();
  };
}
