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
