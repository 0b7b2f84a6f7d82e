import { createGunzip, createGzip } from 'node:zlib';

/**
 * Gzip a text given in pieces (canonicalPieces of a manifest) into `sink`, chunk by
 * chunk, so that neither the whole text nor its UTF-8 bytes are held at once: only
 * the piece in hand and zlib's window. `onPiece` sees every piece before it is
 * compressed (to hash the text on the way). Waits for zlib when its buffer is full;
 * rejects with zlib's error, or with what `sink` or `onPiece` threw.
 */
export async function gzipPieces(pieces: Iterable<string>, sink: (chunk: Buffer) => void, onPiece?: (piece: string) => void): Promise<void> {
  const gz = createGzip();
  let failure: unknown = null;
  gz.on('data', (chunk: Buffer) => {
    if (failure !== null) return;
    try { sink(chunk); } catch (err) { failure = err; gz.destroy(); }
  });
  const done = new Promise<void>((resolve, reject) => {
    gz.once('end', () => (failure === null ? resolve() : reject(failure)));
    gz.once('close', () => { if (failure !== null) reject(failure); });
    gz.once('error', (err) => { failure ??= err; reject(failure); });
  });
  // A failure settles `done` before anyone awaits it: keep that from being reported as unhandled.
  done.catch(() => undefined);
  try {
    for (const piece of pieces) {
      if (failure !== null) break;
      onPiece?.(piece);
      if (!gz.write(piece)) {
        await new Promise<void>((resolve) => {
          const go = (): void => { gz.off('drain', go); gz.off('close', go); resolve(); };
          gz.on('drain', go);
          gz.on('close', go);
        });
      }
    }
  } catch (err) {
    failure ??= err;
    gz.destroy();
  }
  if (failure === null) gz.end();
  await done;
}

/**
 * Inflate gzip bytes (one or more members) chunk by chunk into `onChunk`, without
 * holding the inflated text: rejects with a RangeError (code ERR_BUFFER_TOO_LARGE,
 * as zlib's own bound) once more than `cap` bytes came out, or with zlib's error.
 */
export async function gunzipEach(bytes: Uint8Array, cap: number, onChunk: (chunk: Buffer) => void): Promise<void> {
  const gunzip = createGunzip();
  let total = 0;
  await new Promise<void>((resolve, reject) => {
    gunzip.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (total > cap) {
        gunzip.destroy(Object.assign(new RangeError(`inflates past ${cap} bytes`), { code: 'ERR_BUFFER_TOO_LARGE' }));
        return;
      }
      try { onChunk(chunk); } catch (err) { gunzip.destroy(err instanceof Error ? err : new Error(String(err))); }
    });
    gunzip.once('end', resolve);
    gunzip.once('error', reject);
    gunzip.end(bytes);
  });
}
