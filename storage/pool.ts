import pLimit from 'p-limit';

/**
 * Runs `fn` over `items` with at most `limit` in flight. The first failure rejects, and items not yet started are
 * dropped (GC and scrub must not go on deleting after the caller has seen an error).
 */
export async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const slot = pLimit(Math.max(1, limit));
  try {
    await Promise.all(items.map((item) => slot(() => fn(item))));
  } finally {
    slot.clearQueue();
  }
}
