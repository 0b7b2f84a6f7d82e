import t from 'tap';
import { canonicalJson, digestOf } from '../../../agent/protocol/canonical.js';

t.test('keys sorted by code unit at every depth, no whitespace, undefined dropped', async (t) => {
  t.equal(canonicalJson({ b: 1, a: { d: [3, { z: true, y: null }], c: 'x' }, e: undefined }), '{"a":{"c":"x","d":[3,{"y":null,"z":true}]},"b":1}');
  t.equal(canonicalJson({ 'é': 1, Z: 2, a: 3, '/usr': 4, '/etc': 5 }), '{"/etc":5,"/usr":4,"Z":2,"a":3,"é":1}');
  t.equal(canonicalJson([undefined, 1]), '[null,1]');
  t.equal(canonicalJson('a"b'), '"a\\"b"');
});

t.test('integer-like keys are sorted as strings too (V8 would put them first)', async (t) => {
  t.equal(canonicalJson({ b: 1, 10: 'x', 9: 'y', a: { 2: 0, 1: 0 } }), '{"10":"x","9":"y","a":{"1":0,"2":0},"b":1}');
});

t.test('equal values in any key order give equal digests; bad values are refused', async (t) => {
  t.equal(digestOf({ a: 1, b: [1, 2] }), digestOf({ b: [1, 2], a: 1 }));
  t.not(digestOf({ a: 1 }), digestOf({ a: 2 }));
  t.match(digestOf({}), /^sha256:[0-9a-f]{64}$/);
  t.throws(() => canonicalJson({ a: Number.NaN }), /non-finite/);
  t.throws(() => canonicalJson({ a: 1n }), /bigint/);
});

t.test('sortedJson: the canonical key order, indented like JSON.stringify, integer-like keys included', async (t) => {
  const { sortedJson } = await import('../../../agent/protocol/canonical.js');
  const v = { b: [1, { d: 2, c: [] }], a: {}, u: undefined, e: [undefined] };
  t.equal(sortedJson(v), `${JSON.stringify({ a: {}, b: [1, { c: [], d: 2 }], e: [null] }, null, 2)}\n`);
  // V8 would put "10" and "9" first, in numeric order; canonical order is by code unit.
  t.equal(sortedJson({ b: 1, 10: { z: 1, 9: 2 }, a: [] }), '{\n  "10": {\n    "9": 2,\n    "z": 1\n  },\n  "a": [],\n  "b": 1\n}\n');
});

t.test('canonicalPieces: the same text as canonicalJson, in bounded pieces, for any shape', async (t) => {
  const { canonicalPieces } = await import('../../../agent/protocol/canonical.js');
  const files: Record<string, unknown> = {};
  for (let i = 0; i < 3000; i++) files[`/usr/lib/f-${i}`] = { type: 'file', size: i, sha256: 'ab'.repeat(32), xattrs: i % 7 === 0 ? { 'user.x': 'é\u2028' } : undefined };
  const values: unknown[] = [
    null, 1, 'a"b', [], {}, [undefined, 1],
    { b: 1, 10: 'x', 9: 'y', a: { 2: 0, 1: 0 } },
    // A manifest's shape: the large section is two levels below the top.
    { schema: 'm', host: { hostname: 'h' }, digests: { root: 'x' }, files, unread: [] },
    { manifest: { files, packages: { 'dpkg:a:amd64': { version: '1' } } }, seq: 3 },
    // Integer-like keys in a split object are ordered by code unit as well.
    Object.fromEntries(Array.from({ length: 200 }, (_, i) => [String(i), { v: i }])),
    Array.from({ length: 500 }, (_, i) => (i % 3 ? { q: i } : undefined)),
  ];
  for (const v of values) {
    for (const size of [1, 100, 64 * 1024]) {
      const pieces = [...canonicalPieces(v, size)];
      t.equal(pieces.join(''), canonicalJson(v), `same text (${JSON.stringify(v)?.slice(0, 40)}, pieces of ${size})`);
    }
  }
  const manifest = values[7];
  const pieces = [...canonicalPieces(manifest, 4096)];
  t.ok(pieces.length > 10, 'a large value comes in many pieces');
  // No piece is much larger than asked: one member at most overshoots.
  t.ok(pieces.every((p) => p.length < 4096 + 1024), 'pieces stay near the size asked');
  t.equal(digestOf(manifest), `sha256:${(await import('node:crypto')).createHash('sha256').update(canonicalJson(manifest)).digest('hex')}`, 'digestOf hashes the same bytes');
  t.throws(() => [...canonicalPieces({ a: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, i === 50 ? Number.NaN : i])) })], /non-finite/, 'bad values are refused in pieces too');
});
