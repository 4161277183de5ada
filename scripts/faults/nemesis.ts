import { setTimeout as sleep } from 'node:timers/promises';
import type { KafkaCluster } from '../kafka/cluster.js';
import type { History } from './history.js';
import type { ClusterNode } from './node-process.js';
import type { SeededRandom } from './random.js';

export const FAULT_KINDS = [
  'kill-node',
  'pause-node',
  'wipe-node',
  'wipe-node-while-its-peer-is-paused',
  'kill-broker',
  'pause-broker',
  'restart-node-while-broker-down',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface NemesisTarget {
  readonly nodes: readonly ClusterNode[];
  readonly kafka: KafkaCluster;
  readonly history: History;
}

/**
 * Faults one at a time, so that at most one broker is away: the cluster must then keep every acknowledged
 * write (RF 3, min.insync.replicas 2). At most two nodes are away together (a wiped node and the peer it
 * first asks for a snapshot), so one always serves. Kinds come round in a seeded order, so a short run still
 * meets each of them.
 */
export class Nemesis {
  readonly #target: NemesisTarget;
  readonly #random: SeededRandom;
  readonly #pausedBrokers = new Set<number>();
  readonly done: FaultKind[] = [];

  constructor(target: NemesisTarget, random: SeededRandom) {
    this.#target = target;
    this.#random = random;
  }

  /**
   * Runs faults until `until()` says stop (and, with `everyKind`, each kind ran once); each fault is
   * recovered from before the next starts.
   */
  async run(until: () => boolean, everyKind = false): Promise<void> {
    let order: FaultKind[] = [];
    const finished = () => until() && (!everyKind || new Set(this.done).size === FAULT_KINDS.length);
    while (!finished()) {
      await sleep(this.#random.int(1000, 3000));
      if (finished()) break;
      if (order.length === 0) order = this.#random.shuffle(FAULT_KINDS);
      const kind = order.shift() as FaultKind;
      await this.#fault(kind);
      this.done.push(kind);
    }
  }

  /** Undoes whatever is still paused or down: every broker running, every node running and resumed. */
  async heal(): Promise<void> {
    const { kafka, nodes, history } = this.#target;
    history.event('heal: resume and start everything');
    for (const id of this.#pausedBrokers) await kafka.resumeBroker(id);
    this.#pausedBrokers.clear();
    for (const broker of await kafka.status()) if (!broker.running) await kafka.startBroker(broker.id);
    for (const node of nodes) if (node.paused) node.resume();
    await Promise.all(nodes.map((node) => this.#startNode(node)));
  }

  async #fault(kind: FaultKind): Promise<void> {
    const { nodes, kafka, history } = this.#target;
    const random = this.#random;
    const node = random.pick(nodes);
    const broker = random.int(1, kafka.size);
    switch (kind) {
      case 'kill-node':
        history.event(`kill -9 ${node.name}`);
        await node.kill9();
        await sleep(random.int(500, 3000));
        await this.#startNode(node);
        break;
      case 'pause-node':
        history.event(`SIGSTOP ${node.name}`);
        node.pause();
        await sleep(random.int(1000, 4000));
        history.event(`SIGCONT ${node.name}`);
        node.resume();
        break;
      case 'wipe-node':
        history.event(`kill -9 ${node.name} and wipe its data`);
        await node.kill9();
        await node.wipe();
        await this.#startNode(node);
        break;
      case 'wipe-node-while-its-peer-is-paused': {
        // The wiped node asks its first peer, which answers nothing: after the stall limit it must take
        // the next peer's snapshot (or read the topic), and serve what the others serve.
        const peer = node.bootstrapFrom[0];
        if (peer === undefined || peer.paused || !peer.running) {
          history.event(`kill -9 ${node.name} and wipe its data (its first peer is away already)`);
          await node.kill9();
          await node.wipe();
          await this.#startNode(node);
          break;
        }
        history.event(`SIGSTOP ${peer.name}, then kill -9 ${node.name} and wipe its data`);
        peer.pause();
        await node.kill9();
        await node.wipe();
        await this.#startNode(node);
        history.event(`SIGCONT ${peer.name}`);
        peer.resume();
        break;
      }
      case 'kill-broker':
        history.event(`kill -9 broker ${broker}`);
        await kafka.stopBroker(broker);
        await sleep(random.int(2000, 6000));
        await this.#startBroker(broker);
        break;
      case 'pause-broker':
        history.event(`SIGSTOP broker ${broker}`);
        await kafka.pauseBroker(broker);
        this.#pausedBrokers.add(broker);
        await sleep(random.int(1000, 5000));
        history.event(`SIGCONT broker ${broker}`);
        await kafka.resumeBroker(broker);
        this.#pausedBrokers.delete(broker);
        break;
      case 'restart-node-while-broker-down':
        history.event(`kill -9 broker ${broker}, then kill -9 ${node.name}`);
        await kafka.stopBroker(broker);
        await node.kill9();
        await this.#startNode(node);
        await sleep(random.int(2000, 5000));
        await this.#startBroker(broker);
        break;
    }
  }

  async #startNode(node: ClusterNode): Promise<void> {
    if (node.running) return;
    const { history } = this.#target;
    history.event(`start ${node.name}`);
    // A node that crashes on start-up is recorded as a crash by ClusterNode; try again, as an operator's
    // supervisor would, so the run goes on.
    for (let attempt = 1; !(await node.start()); attempt++) {
      history.event(`${node.name} exited during start-up (attempt ${attempt})`);
      if (attempt === 10) throw new Error(`${node.name} exited during start-up 10 times`);
      await sleep(1000);
    }
    history.event(`${node.name} listens`);
  }

  async #startBroker(id: number): Promise<void> {
    this.#target.history.event(`start broker ${id}`);
    await this.#target.kafka.startBroker(id);
    this.#target.history.event(`broker ${id} registered`);
  }
}
