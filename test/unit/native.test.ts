// Runs the native unit tests (test/native/unit_tests.cc, built by CMake with the host) and
// checks their verdict: every check passed, and there were checks to pass.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { root } from '../helpers';

const binary = path.join(root, 'build', 'native', 'linux-x64', 'out', 'host-test', 'isapi-native-tests');

describe.skipIf(process.platform !== 'linux')('native unit tests', () => {
  it('the wire codec, the HTTP parser, the chunked decoder, the vdir map and the thread pools pass', () => {
    expect(existsSync(binary), `${binary} is missing: npm run build:native builds it`).toBe(true);
    const r = spawnSync(binary, { encoding: 'utf8', timeout: 60_000 });
    const summary = /native unit tests: (\d+) checks, (\d+) failed/.exec(r.stdout);
    expect(summary, r.stdout + r.stderr).not.toBeNull();
    expect(Number(summary![1])).toBeGreaterThan(40);
    expect(r.stdout.split('\n').filter((l) => l.startsWith('FAIL'))).toEqual([]);
    expect(r.status).toBe(0);
  });
});
