// node-isapi/testing: run an extension or a filter in-process, with no packing and no web server.
//
// The worker's own loop (runtime/worker_main.ts startWorker) runs the script, exactly as in a
// packed worker; what it talks to is not the bridge's Node-API addon but `Generation`
// (testing_host.ts), which plays the bridge and the web server behind it (`Host`) with their
// semantics: the first
// message carries the ECB fields, the preloaded body and the prefetched server variables; the
// rest of the body follows in pieces as the handler credits it (at most 1 MiB ahead); writes are
// acknowledged per request as the "client" reads them (pause() holds them, so WriteClient waits
// above 1 MiB unacknowledged, as it does behind a slow client); the channel's queue answers false
// above 1 MiB and sends a Drain; TransmitFile reads the real file; InternalReloadException starts
// a fresh generation and drains the old one; an abort reaches the handler as the bridge's Abort.
// One request's exchange is testing_exchange.ts; testFilter is testing_filter.ts.

import type { Extension, UserModule } from './extension';
import { type Body, type Factory, statusText } from './testing_exchange';
import { Host, hostOptions, moduleOf } from './testing_host';

export type TestHeaders = Record<string, string | number | readonly string[]>;

export interface TestExtensionOptions {
  /** The script's name, as the worker's messages show it (default "test"). */
  name?: string;
  /** The virtual directory the extension is mapped at: SCRIPT_NAME (default "/"). */
  vdir?: string;
  /** The folder URLs map to: PATH_TRANSLATED, MapURLToPath, ExecURL of static files (default: cwd). */
  root?: string;
  /** Server variables for every request, over the host's defaults (e.g. { REMOTE_ADDR: '10.0.0.7', LOGON_USER: 'alice' }). */
  serverVariables?: Record<string, string>;
  /** Exception text in 500 responses (default true here: tests want to see it). */
  detailedErrors?: boolean;
  /** How much of a body IIS reads before calling the extension (default 48 KiB). */
  preloadBytes?: number;
  /** Answers ExecURL child requests; without it, files under `root` are served, else 404. */
  execUrl?: (url: string, o: { method: string; headers: string; body: string; flags: number }) => ExecResult | Promise<ExecResult>;
}

export interface ExecResult {
  status: number;
  headers?: TestHeaders;
  body?: string | Uint8Array;
}

export interface TestRequestOptions {
  headers?: TestHeaders;
  /** A string or bytes (sent with Content-Length), or an (async) iterable of pieces (sent chunked). */
  body?: Body;
  /** Send even a string or bytes body chunked (TotalBytes 0xFFFFFFFF). */
  chunked?: boolean;
  /** Server variables for this request only, over the extension's. */
  serverVariables?: Record<string, string>;
  /** "HTTP/1.1" (default) or "HTTP/1.0". */
  protocol?: string;
  /** Aborting it is the client going away: the handler gets the bridge's Abort. */
  signal?: AbortSignal;
}

export interface TestResponse {
  /** The status code (from the status line, else the ECB's HttpStatusCode). */
  status: number;
  statusText: string;
  /** Response headers, names lower-cased, repeated ones joined with ", " (set-cookie: see rawHeaders). */
  headers: Record<string, string>;
  rawHeaders: Array<[string, string]>;
  body: Buffer;
  /** The body as UTF-8 text. */
  text: string;
  /** Each WriteClient's bytes, in order: how the response was streamed. */
  writes: Buffer[];
  /** lpszLogData plus AppendLogParameter text: what the access log shows. */
  logData: string;
  /** The HSE_STATUS_* the request ended with. */
  hseStatus: number;
  keepConn: boolean;
  /** The request was aborted (signal) before the handler finished. */
  aborted: boolean;
}

/** One request in flight: its response so far, client-side flow control and abort. */
export interface TestExchange {
  readonly id: number;
  /** Resolves when the request ends (DoneWithSession), or at once with what arrived when aborted. */
  readonly response: Promise<TestResponse>;
  /** Resolves when the response headers arrived. */
  readonly headersSent: Promise<void>;
  /** Body bytes received so far. */
  readonly received: number;
  /** The client stops reading: the server stops acknowledging writes (WriteClient waits above 1 MiB). */
  pause(): void;
  resume(): void;
  /** The client goes away. */
  abort(): void;
}

export interface TestExtension {
  request(method: string, url: string, options?: TestRequestOptions): Promise<TestResponse>;
  /** Starts a request and returns at once, to watch it stream, pause the client or abort. */
  open(method: string, url: string, options?: TestRequestOptions): TestExchange;
  /** Lines the worker logged through the bridge (addon.log) and ReportUnhealthy reasons. */
  readonly log: string[];
  /** The reasons of each reload (InternalReloadException) so far. */
  readonly reloads: string[];
  /** Worker generations started (1, then one more per reload). */
  readonly generation: number;
  /** Resolves once the reload in progress (if any) has a ready generation. */
  settled(): Promise<void>;
  /** Drains and stops the workers: TerminateExtension (and TerminateFilter) run. */
  close(): Promise<void>;
}


export async function testExtension(
  factory: Factory<Extension> | UserModule,
  options: TestExtensionOptions = {},
): Promise<TestExtension> {
  const user = moduleOf(factory as UserModule | Factory<unknown>, '__ExtensionFactory__');
  if (typeof user.__ExtensionFactory__ !== 'function') throw new TypeError('testExtension wants __ExtensionFactory__ (or a module exporting it)');
  const host = new Host(user, hostOptions(options));
  await host.startGeneration();
  return {
    request: (method, url, o) => host.open(method, url, o).response,
    open: (method, url, o) => host.open(method, url, o),
    log: host.log,
    reloads: host.reloads,
    get generation() {
      return host.generation;
    },
    settled: () => host.settled(),
    close: () => host.close(),
  };
}


export * from './testing_filter';
