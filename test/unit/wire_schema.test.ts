// The channel's schema (native/channel/messages.h) against the TypeScript side
// (runtime/channel.ts): the native unit-test binary encodes every message with sample values,
// the worker's real addon must hand JavaScript the same values; and what JavaScript writes
// through the addon must decode, in C++, to the values it passed. Also: the protocol version is
// the same on every side, and a worker refuses a bridge that speaks another one.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHANNEL_PROTOCOL, In, loadBridgeAddon, type BridgeAddon } from '../../runtime/channel';
import { PREFETCHED_VARIABLES } from '../../runtime/server_variables';
import { root } from '../helpers';

const out = path.join(root, 'build', 'native', 'linux-x64', 'out');
const tests = path.join(out, 'host-test', 'isapi-native-tests');
const bridgePath = path.join(out, 'isapi-bridge.so');

interface Sample {
  name: string;
  type: number;
  frame: Buffer;
  values: Record<string, unknown>;
}

function samples(): { list: Sample[]; protocol: number; prefetched: string[] } {
  const r = spawnSync(tests, ['--wire-samples'], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  const list: Sample[] = [];
  let protocol = -1;
  let prefetched: string[] = [];
  for (const line of r.stdout.trim().split('\n')) {
    const [name = '', type = '', hex = '', ...json] = line.split(' ');
    if (name === 'protocol') protocol = Number(type);
    else if (name === 'prefetched') prefetched = [type, hex, ...json];
    else list.push({ name, type: Number(type), frame: Buffer.from(hex, 'hex'), values: JSON.parse(json.join(' ')) });
  }
  return { list, protocol, prefetched };
}

/** What C++ decodes frames to: [name, id, values] per frame. */
function decodeInCpp(frames: Buffer): Array<[string, number, unknown]> {
  const r = spawnSync(tests, ['--wire-decode'], { input: frames.toString('hex'), encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout
    .trim()
    .split('\n')
    .map((line) => {
      const [name = '', id, ...json] = line.split(' ');
      return [name, Number(id), json[0] === 'malformed' ? 'malformed' : JSON.parse(json.join(' '))] as [string, number, unknown];
    });
}

/** JSON-shaped like the C++ side's: Buffers become { hex }. */
function plain(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return { hex: v.toString('hex') };
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}
const bytes = (v: unknown) => Buffer.from((v as { hex: string }).hex, 'hex');

// Every bridge → worker type runtime/channel.ts's In names, by the schema's names.
const IN_TYPES: Record<string, number> = {
  Request: In.Request,
  Body: In.Body,
  VarReply: In.VarReply,
  Abort: In.Abort,
  Shutdown: In.Shutdown,
  ServerSupportReply: In.ServerSupportReply,
  FilterNotify: In.FilterNotify,
  FilterCallReply: In.FilterCallReply,
  WriteAck: In.WriteAck,
};

// Every worker → bridge message, as runtime/channel.ts's BridgeAddon sends it, from the sample's
// values. Taken and Pong are written by the addon itself (Channel::deliver, and the answer to
// Ping, checked below), never by JavaScript.
type Call = (a: BridgeAddon, v: Record<string, any>) => void;
const OUT_CALLS: Record<string, { id: number; call: Call }> = {
  ResponseHeaders: { id: 7, call: (a, v) => a.headers(7, v.status, v.headers, v.keepConn) },
  Write: { id: 7, call: (a, v) => a.write(7, bytes(v.data)) },
  Done: { id: 7, call: (a, v) => a.done(7, v.hseStatus, v.httpStatus, v.logData) },
  GetVar: { id: 7, call: (a, v) => a.getVar(7, v.callId, v.name) },
  Log: { id: 0, call: (a, v) => a.log(v.line) },
  BodyCredit: { id: 7, call: (a, v) => a.credit(7, v.bytes) },
  ServerSupport: { id: 7, call: (a, v) => a.serverSupport(7, v.callId, v.request, v.ints, v.strs) },
  Reload: { id: 0, call: (a, v) => a.reload(v.reason) },
  FilterCall: { id: 7, call: (a, v) => a.filterCall(7, v.callId, v.op, v.name) },
  FilterReply: {
    id: 7,
    call: (a, v) => a.filterReply(7, v.status, v.changes.map(([op, x, y]: [number, unknown, unknown]) => [op, bytes(x), bytes(y)])),
  },
};
const NATIVE_ONLY = ['Ready', 'Taken', 'Pong', 'Ping'];

describe.skipIf(process.platform !== 'linux')('the channel schema, C++ against TypeScript', () => {
  expect(existsSync(tests) && existsSync(bridgePath), 'npm run build:native builds the native tests and the bridge').toBe(true);
  const { list, protocol, prefetched } = samples();
  const addon = loadBridgeAddon(bridgePath);
  const byName = new Map(list.map((s) => [s.name, s]));

  it('every message has a sample, and every side speaks the same protocol', () => {
    expect(list.length).toBe(23);
    expect(protocol).toBe(CHANNEL_PROTOCOL);
    expect(addon.protocolVersion).toBe(CHANNEL_PROTOCOL);
    const covered = [...Object.keys(IN_TYPES), ...Object.keys(OUT_CALLS), ...NATIVE_ONLY].sort();
    expect(covered).toEqual(list.map((s) => s.name).sort());
    for (const [name, type] of Object.entries(IN_TYPES)) expect([name, byName.get(name)!.type]).toEqual([name, type]);
  });

  it('the server variables the bridge prefetches are the ones runtime/server_variables.ts names', () => {
    expect(prefetched).toEqual([...PREFETCHED_VARIABLES]);
  });

  it('bridge → worker: the addon hands JavaScript exactly the values C++ encoded', () => {
    for (const name of Object.keys(IN_TYPES)) {
      const s = byName.get(name)!;
      const got: unknown[][] = [];
      addon._deliverFrames!(s.frame, (type, id, message) => got.push([type, id, plain(message)]));
      expect([name, got]).toEqual([name, [[s.type, 7, s.values]]]);
    }
  });

  it('a Ping is answered by the addon with a Pong of the same sequence number, without JavaScript', () => {
    const ping = byName.get('Ping')!;
    const seen: unknown[] = [];
    const frames = addon._captureFrames!(() => addon._deliverFrames!(ping.frame, (...args) => seen.push(args)));
    expect(seen).toEqual([]);
    expect(decodeInCpp(frames)).toEqual([['Pong', 0, { seq: ping.values.seq }]]);
  });

  it('worker → bridge: what JavaScript passes to the addon decodes in C++ to the same values', () => {
    for (const [name, { id, call }] of Object.entries(OUT_CALLS)) {
      const s = byName.get(name)!;
      const frames = addon._captureFrames!(() => call(addon, s.values));
      expect(decodeInCpp(frames)).toEqual([[name, id, s.values]]);
      // Byte for byte the frame C++ encoded, but for the request id.
      expect(frames.subarray(12).equals(s.frame.subarray(12)), name).toBe(true);
    }
    const ready = decodeInCpp(addon._captureFrames!(() => addon.ready()));
    expect(ready).toEqual([['Ready', 0, { protocol: CHANNEL_PROTOCOL, pid: process.pid, token: '' }]]);
  });

  it('an argument of the wrong type is a TypeError naming the call and the field, and sends nothing', () => {
    let thrown: unknown;
    const frames = addon._captureFrames!(() => {
      try {
        addon.headers(7, 200 as unknown as string, '', false);
      } catch (err) {
        thrown = err;
      }
    });
    expect(thrown).toBeInstanceOf(TypeError);
    expect((thrown as Error).message).toBe('headers(): status must be a string or a Uint8Array');
    expect(frames.length).toBe(0);
    expect(() => addon.credit(7, 'many' as unknown as number)).toThrow('credit(): bytes must be a number');
  });

  it('a frame that does not decode as its type reaches no handler: the bridge is told in its log', () => {
    const body = byName.get('Body')!;
    const cut = Buffer.from(body.frame.subarray(0, body.frame.length - 1));
    cut.writeUInt32LE(cut.length - 12, 0);
    const seen: unknown[] = [];
    const frames = addon._captureFrames!(() => addon._deliverFrames!(cut, (...args) => seen.push(args)));
    expect(seen).toEqual([]);
    expect(decodeInCpp(frames)).toEqual([
      ['Log', 0, { line: 'the bridge sent a malformed Body (a bridge from a different pack?); dropped it' }],
    ]);
  });

  it('a worker refuses a bridge of another protocol with one line saying so', () => {
    const saved = process.env.ISAPI_CHANNEL_PROTOCOL;
    process.env.ISAPI_CHANNEL_PROTOCOL = String(CHANNEL_PROTOCOL - 1);
    try {
      expect(() => loadBridgeAddon(bridgePath)).toThrow(
        `this worker speaks channel protocol ${CHANNEL_PROTOCOL} but its bridge speaks ${CHANNEL_PROTOCOL - 1}: ` +
          'the folder mixes files from different packs (pack it again)',
      );
    } finally {
      if (saved === undefined) delete process.env.ISAPI_CHANNEL_PROTOCOL;
      else process.env.ISAPI_CHANNEL_PROTOCOL = saved;
    }
    // The addon checks too, for a worker whose script is not this runtime's.
    const script =
      `const m = { exports: {} }; process.dlopen(m, ${JSON.stringify(bridgePath)});` +
      `try { m.exports.open(() => {}); } catch (e) { console.log(e.message); }`;
    const r = spawnSync(process.execPath, ['-e', script], {
      encoding: 'utf8',
      env: { ...process.env, ISAPI_CHANNEL: 'fd:99', ISAPI_CHANNEL_TOKEN: 'x', ISAPI_CHANNEL_PROTOCOL: '2' },
    });
    expect(r.stdout.trim()).toBe(
      `this worker's addon speaks channel protocol ${CHANNEL_PROTOCOL} but its bridge speaks 2: ` +
        'the folder mixes files from different packs (pack it again)',
    );
  });
});
