// pywin32's redirector_with_filter, in TypeScript: one script, one DLL, both an extension and
// a filter. The filter (PREPROC_HEADERS) rewrites every URL outside the extension's virtual
// directory into it and counts requests per connection in its FilterContext; the extension
// then proxies the request to another site (ISAPI_REDIRECT_TARGET, e.g. http://127.0.0.1:9000).
import {
  HeaderData,
  SF_NOTIFY_ORDER_DEFAULT,
  SF_NOTIFY_PREPROC_HEADERS,
  SimpleExtension,
  SimpleFilter,
  type ECB,
  type FilterContext,
  type InstallParameters,
} from 'node-isapi';

const VDIR = '/redirector';
const TARGET = process.env.ISAPI_REDIRECT_TARGET ?? 'http://127.0.0.1:9000';

class RedirectorFilter extends SimpleFilter {
  readonly filterFlags = SF_NOTIFY_PREPROC_HEADERS | SF_NOTIFY_ORDER_DEFAULT;

  async HttpFilterProc(fc: FilterContext) {
    const headers = fc.GetData() as HeaderData;
    const count = ((fc.FilterContext as number | undefined) ?? 0) + 1;
    fc.FilterContext = count;
    headers.AddHeader('X-Connection-Request:', String(count));
    const url = (await headers.GetHeader('url')) ?? '/';
    if (url !== VDIR && !url.startsWith(VDIR + '/')) headers.SetHeader('url', VDIR + url);
  }
}

class Redirector extends SimpleExtension {
  async HttpExtensionProc(ecb: ECB) {
    const original = ecb.PathInfo.slice(VDIR.length) || '/';
    const query = ecb.QueryString ? `?${ecb.QueryString}` : '';
    const body = ecb.Method === 'GET' || ecb.Method === 'HEAD' ? undefined : new Uint8Array(await ecb.readBody());
    const upstream = await fetch(TARGET + original + query, { method: ecb.Method, body, redirect: 'manual' });
    const payload = Buffer.from(await upstream.arrayBuffer());
    const headers: Record<string, string> = {
      'Content-Type': upstream.headers.get('content-type') ?? 'application/octet-stream',
      'Content-Length': String(payload.length),
      'X-Redirector-Connection-Request': await ecb.GetServerVariable('HTTP_X_CONNECTION_REQUEST', '0'),
    };
    ecb.SendResponseHeaders(`${upstream.status} ${upstream.statusText || 'OK'}`, headers);
    if (ecb.Method !== 'HEAD') await ecb.WriteClient(payload);
  }
}

export function __FilterFactory__() {
  return new RedirectorFilter();
}

export function __ExtensionFactory__() {
  return new Redirector();
}

// What it serves: the application /redirector (not /redirector-with-filter, the script's name).
// The filter is registered for the whole site (IIS filters are per site) because the installer
// sees __FilterFactory__; it loads in every pool of the site, which the plan lists.
export const install: InstallParameters = {
  virtualDirs: [{ name: VDIR }],
};
