/**
 * Pending operations grouped by the AbortSignal they were given, with one abort listener per signal
 * however many share it: the appends of a `Write` share their call's signal, and EventTarget compares
 * each new listener with the ones already there, so a listener per append costs quadratic time.
 */
export class SignalGroups<T> {
  readonly #groups = new Map<AbortSignal, { readonly members: Set<T>; readonly onAbort: () => void }>();
  readonly #onAbort: (member: T, signal: AbortSignal) => void;

  /** `onAbort` is called for every member still in the group when its signal aborts. */
  constructor(onAbort: (member: T, signal: AbortSignal) => void) {
    this.#onAbort = onAbort;
  }

  add(signal: AbortSignal, member: T): void {
    const group = this.#groups.get(signal);
    if (group !== undefined) {
      group.members.add(member);
      return;
    }
    const members = new Set([member]);
    const onAbort = (): void => {
      this.#groups.delete(signal);
      for (const aborted of members) this.#onAbort(aborted, signal);
    };
    this.#groups.set(signal, { members, onAbort });
    signal.addEventListener('abort', onAbort, { once: true });
  }

  /** Forgets a member; the signal is let go once its group is empty. */
  delete(signal: AbortSignal, member: T): void {
    const group = this.#groups.get(signal);
    if (group === undefined || !group.members.delete(member) || group.members.size > 0) return;
    signal.removeEventListener('abort', group.onAbort);
    this.#groups.delete(signal);
  }
}
