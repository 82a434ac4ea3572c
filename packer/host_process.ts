// Starting isapi-host for `isapi serve` and `isapi dev`, and stopping it gracefully (requests in
// flight finish, then TerminateExtension and TerminateFilter).
import { spawn, type ChildProcess } from 'node:child_process';

export interface RunningHost {
  child: ChildProcess;
  /** Asks the host to drain and stop. */
  stop: () => void;
}

/**
 * Natively the host stops on SIGTERM. Under Wine a POSIX signal ends isapi-host.exe without its
 * console handler running (no drain, no TerminateExtension), so there the host runs in its own
 * process group (Ctrl+C in a terminal reaches only the caller) with --stop-on-stdin-close, and
 * stops when its stdin closes: when asked, or when the caller dies.
 */
export function spawnHost(
  cmd: { command: string; args: string[]; env?: NodeJS.ProcessEnv },
  wine: boolean,
  output: 'inherit' | 'pipe',
): RunningHost {
  if (wine) {
    const child = spawn(cmd.command, [...cmd.args, '--stop-on-stdin-close'], { env: cmd.env, stdio: ['pipe', output, output], detached: true });
    return { child, stop: () => stopHost(child, true) };
  }
  const child = spawn(cmd.command, cmd.args, { env: cmd.env, stdio: ['ignore', output, output] });
  return { child, stop: () => stopHost(child, false) };
}

/** Asks a host started by spawnHost to drain and stop. */
export function stopHost(child: ChildProcess, wine: boolean): void {
  if (wine) child.stdin?.end();
  else child.kill('SIGTERM');
}
