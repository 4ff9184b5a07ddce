// Memory, with AssemblyScript's `stub` runtime (asc --runtime stub): one arena, allocated
// upwards, nothing freed object by object and nothing collected (no GC, no shadow stack).
// Everything a request makes is given back at once when the next request starts, and a long
// loop can give back what one round made (GET /orders, a page at a time). Both rest on the
// stub's own layout: blocks from just above `__heap_base`, each a 4-byte header then its bytes,
// rounded so that every block's bytes start 16-aligned; `__free` of the last block moves the
// end back to it, and `__reset` empties the arena.

const BLOCK_OVERHEAD: usize = 4;

// @ts-ignore: decorator
@inline function arenaStart(): usize {
  return ((__heap_base + BLOCK_OVERHEAD + 15) & ~15) - BLOCK_OVERHEAD;
}

/** Where the arena ends now: `arenaRelease` gives back everything allocated since. */
export function arenaMark(): usize {
  let probe = __alloc(0);
  __free(probe);
  return probe - BLOCK_OVERHEAD;
}

/** Gives back everything allocated since `mark`; what lies below it stays as it is. */
export function arenaRelease(mark: usize): void {
  let start = arenaStart();
  // The arena is emptied and one block reaching to `mark` allocated at its start: that block's
  // header is written over the first block's, which is put back.
  let header = load<u32>(start);
  __reset();
  if (mark > start) __alloc(mark - start - BLOCK_OVERHEAD);
  store<u32>(start, header);
}
