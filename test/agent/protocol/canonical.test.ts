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
