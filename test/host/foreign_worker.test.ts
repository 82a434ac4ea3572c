// A bridge and a worker from different packs: the bridge reads the protocol in the worker's
// Ready, refuses it with one log line that says so, and the request is answered (never hangs).
// The worker here is a real process speaking the previous protocol over the real channel.
import { chmodSync, copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANNEL_PROTOCOL } from '../../runtime/channel';
import { bridgeLog, nativeOut, startHost, waitFor, type Host } from '../helpers';

const OLD = CHANNEL_PROTOCOL - 1;
let host: Host;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-foreign-'));
  // The bridge of the host's own build (the sanitizer one under .ci/sanitizers.sh: a plain bridge
  // in an ASan host mixes two allocators).
  copyFileSync(path.join(nativeOut, 'isapi-bridge.so'), path.join(dir, '_old.so'));
  // Ready is frame type 1: u32 protocol, u32 pid, str token (the shape every version shares).
  const worker = path.join(dir, 'old');
  writeFileSync(
    worker,
    `#!${process.execPath}
const net = require('node:net');
const fd = Number(process.env.ISAPI_CHANNEL.slice(3));
const token = Buffer.from(process.env.ISAPI_CHANNEL_TOKEN);
const f = Buffer.alloc(24 + token.length);
f.writeUInt32LE(12 + token.length, 0); f.writeUInt16LE(1, 4); f.writeUInt32LE(0, 8);
f.writeUInt32LE(${OLD}, 12); f.writeUInt32LE(process.pid, 16); f.writeUInt32LE(token.length, 20); token.copy(f, 24);
const s = new net.Socket({ fd, readable: true, writable: true });
s.write(f);
s.on('error', () => {});
`,
  );
  chmodSync(worker, 0o755);
  host = await startHost(['--vdir', `/old=${path.join(dir, '_old.so')}`], {
    ISAPI_WORKERS: '1',
    ISAPI_STARTUP_TIMEOUT_MS: '5000',
  });
});
afterAll(async () => {
  await host?.stop();
});

describe.skipIf(process.platform !== 'linux')('a worker from a different pack', () => {
  it('is refused with one log line naming both protocols, and the request gets an answer', async () => {
    const res = await fetch(`${host.url}/old/`);
    expect(res.status).toBeGreaterThanOrEqual(500);
    const line =
      `worker 0 speaks channel protocol ${OLD} but this bridge speaks ${CHANNEL_PROTOCOL}: ` +
      'the folder mixes files from different packs (pack it again); stopping the worker';
    const log = await waitFor(() => (bridgeLog(dir, 'old').includes(line) ? bridgeLog(dir, 'old') : null), 'the refusal in the log');
    expect(log).not.toContain(' ready (pid');
  });
});
