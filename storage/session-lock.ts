// Mutual exclusion per key (an upload session id) inside one process: callers of `run` with the same key take turns,
// in arrival order; other keys never wait. Across replicas the drivers' own checks take over (an append must start at
// the object's current size; a move publishes only the exact size the caller verified — storage/driver.ts).
export class SessionLock {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every earlier caller for `key` has finished; `waited` tells whether anyone was ahead. */
  async run<T>(key: string, fn: (waited: boolean) => Promise<T>): Promise<T> {
    const previous = this.tails.get(key);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    // Tails only ever resolve (they end in a release), so a chain never rejects.
    const tail = previous ? previous.then(() => mine) : mine;
    this.tails.set(key, tail);
    if (previous) await previous;
    try {
      return await fn(previous !== undefined);
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  /** Whether anyone holds or waits for `key` (for tests). */
  busy(key: string): boolean {
    return this.tails.has(key);
  }
}
