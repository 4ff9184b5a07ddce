// Memory, with AssemblyScript's `stub` runtime (asc --runtime stub): one arena, allocated
// upwards, nothing freed object by object and nothing collected (no GC, no shadow stack).
// Everything a request makes is given back at once when the next request starts, and a long
// loop can give back what one round made (GET /orders, a page at a time). Both rest on the
// stub's own rules: `__free` of the last block moves the end back to it, `__reset` empties the
// arena, and a block of `size` bytes takes `size + 4` rounded up to 16.

const BLOCK_OVERHEAD: usize = 4;

/** Where the arena ends now: `arenaRelease` gives back everything allocated since. */
export function arenaMark(): usize {
  let probe = __alloc(0);
  __free(probe);
  return probe - BLOCK_OVERHEAD;
}

export function arenaRelease(mark: usize): void {
  __reset();
  let start = arenaMark();
  if (mark > start) __alloc(mark - start - BLOCK_OVERHEAD);
}
