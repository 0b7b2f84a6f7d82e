/**
 * The compare engine: pure functions from baseline + manifest + rules to findings and
 * reports. Imports only agent/protocol (and npm packages).
 */
export { compare, compareWithDrops, rulesFor, checkExpectations, lineChanges, type CompareInput, type CompareResult, type ExpectVerdict } from './compare.js';
export { buildReport, exitCodeOf, SEVERITIES_DESC, type ReportInput } from './report.js';
export { compileRules, isIgnored, judge, nameOf, DEFAULT_JUDGEMENT, type CompiledRules, type Judgement } from './policy.js';
export { compareApkVersions, parseApkVersion, compareDebianVersions, compareRpmVersions, comparePackageVersions, rpmvercmp, parseDebianVersion, parseRpmEvr, type Ordering } from './versions.js';
export { describeModeChange, explainFile, explainPackage, explainPort, explainProcess, PackageIndex } from './explain.js';
export { compareWithPins, FirstBootCheck, authorizedKeys, keyIdentity, defaultUserKeysPath, pinnedEntry, type PinsInput, type PinnedCompare } from './pins.js';
