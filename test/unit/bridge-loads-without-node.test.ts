// The bridge is also a Node-API addon, yet must load into a process that has no Node at all
// (IIS, isapi-host), under any binding mode.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { root } from '../helpers';

const bridge = path.join(root, 'build', 'native', 'linux-x64', 'out', 'isapi-bridge.so');

it('dlopen(RTLD_NOW) of the bridge in a plain C program finds the ISAPI entry points', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-dl-'));
  writeFileSync(path.join(dir, 'load.c'), `
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char** argv) {
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) { printf("dlopen failed: %s\\n", dlerror()); return 1; }
  const char* names[] = {"GetExtensionVersion", "HttpExtensionProc", "TerminateExtension", "napi_register_module_v1"};
  for (int i = 0; i < 4; i++) printf("%s=%s\\n", names[i], dlsym(h, names[i]) ? "found" : "missing");
  return 0;
}`);
  execFileSync('gcc', ['-o', path.join(dir, 'load'), path.join(dir, 'load.c'), '-ldl']);
  const out = execFileSync(path.join(dir, 'load'), [bridge], { encoding: 'utf8', env: { ...process.env, LD_BIND_NOW: '1' } });
  expect(out).toBe('GetExtensionVersion=found\nHttpExtensionProc=found\nTerminateExtension=found\nnapi_register_module_v1=found\n');
});

it('links no C++ runtime dynamically (it may be loaded next to any other)', () => {
  const needed = execFileSync('readelf', ['-d', bridge], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes('(NEEDED)'))
    .map((l) => /\[(.+)\]/.exec(l)![1]);
  expect(needed.filter((n) => /stdc\+\+|gcc_s/.test(n!))).toEqual([]);
});
