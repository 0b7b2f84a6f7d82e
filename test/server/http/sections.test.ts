import t from 'tap';
import { createHash } from 'node:crypto';
import { canonicalJson } from '../../../agent/protocol/canonical.js';
import { locateManifestSections } from '../../../server/http/sections.js';
import { fullReport, imageSections, manifestOf } from '../helpers/fleet.js';

const body = canonicalJson(fullReport(1, manifestOf(imageSections(), { hostname: 'h', machineId: 'h', imageId: 'ami-1' })));

t.test('finds each section of the manifest and leaves a small parseable rest', async (t) => {
  const located = locateManifestSections(Buffer.from(body));
  t.ok(located);
  t.same([...located!.sections.keys()].sort(), ['files', 'packages', 'ports', 'processes']);
  t.equal(located!.sections.get('files')!.toString(), canonicalJson(imageSections().files));
  const rest = JSON.parse(located!.rest.toString()) as { manifest: Record<string, unknown>; seq: number };
  t.equal(rest.manifest['files'], 0);
  t.equal(rest.seq, 1);
});

t.test('a known canonical section is recognised by its hash without scanning it', async (t) => {
  const files = Buffer.from(canonicalJson(imageSections().files));
  const known = [{ length: files.length, sha256: createHash('sha256').update(files).digest('hex') }];
  const located = locateManifestSections(Buffer.from(body), known);
  t.equal(located!.sections.get('files')!.toString(), files.toString());
  // A truncated section of the same length prefix must not be taken as known.
  const other = body.replace('"/etc/hosts"', '"/etc/hostz"');
  t.not(locateManifestSections(Buffer.from(other), known)!.sections.get('files')!.toString(), files.toString());
});

t.test('sections of equal length (two builds of an image) are hashed once, and the right one is recognised', async (t) => {
  const mine = imageSections();
  const sibling = imageSections();
  sibling.files['/etc/hosts'] = { ...sibling.files['/etc/hosts']!, sha256: 'd'.repeat(64) };
  const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
  const files = canonicalJson(mine.files);
  const siblingFiles = canonicalJson(sibling.files);
  t.equal(siblingFiles.length, files.length, 'the two files sections are equally long');
  // The sibling's section first: the locator must not spend its hash budget on it.
  const known = [{ length: siblingFiles.length, sha256: sha(siblingFiles) }, { length: files.length, sha256: sha(files) }];
  const stats = { hashedBytes: 0 };
  const located = locateManifestSections(Buffer.from(body), known, stats);
  t.ok(located?.canonical.has('files'), 'files recognised as a known section');
  t.equal(stats.hashedBytes, files.length, 'one hash of the section');
  const siblingBody = canonicalJson(fullReport(1, manifestOf(sibling, { hostname: 'h', machineId: 'h', imageId: 'ami-1' })));
  t.ok(locateManifestSections(Buffer.from(siblingBody), known)?.canonical.has('files'), "the sibling's body is recognised too");
});

t.test('refuses shapes it cannot vouch for (the caller then parses the whole body)', async (t) => {
  t.equal(locateManifestSections(Buffer.from('[1,2]')), null, 'not an object');
  t.equal(locateManifestSections(Buffer.from('{"seq":1}')), null, 'no manifest');
  t.equal(locateManifestSections(Buffer.from('{"manifest":{"files":{},"files":{}}}')), null, 'a section twice');
  t.equal(locateManifestSections(Buffer.from('{"manifest":{"\\u0066iles":{}}}')), null, 'an escaped key');
  t.equal(locateManifestSections(Buffer.from('{"manifest":{"files":{"a":"}')), null, 'truncated');
  t.equal(locateManifestSections(Buffer.from('{"manifest":{},"manifest":{"files":{}}}')), null, 'two manifests');
  const s = locateManifestSections(Buffer.from('{"manifest":{"files":{"a\\"}":{"x":"[{"}}},"seq":2}'));
  t.equal(s?.sections.get('files')?.toString(), '{"a\\"}":{"x":"[{"}}', 'quotes and brackets inside strings');
});
