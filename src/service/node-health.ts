/**
 * Whether the node is alive and whether it is ready to serve, for probes (gRPC health, /livez, /readyz)
 * and metrics. The contract of issue 14 shared by the node-state and metrics work; the node-state work
 * implements it.
 */

export type NodeStateName = 'starting' | 'serving' | 'lagging' | 'stopping';

export interface NodeHealthView {
  /** The process can serve (listening, not stopping). */
  live(): boolean;
  /** state() === 'serving'. */
  ready(): boolean;
  state(): NodeStateName;
  /** Calls the listener on every change; returns the function that unsubscribes it. */
  onChange(listener: () => void): () => void;
}
