// A filter that adds security headers to every response the server sends (SEND_RESPONSE),
// whatever produced it: an extension, a static file or an error page.
//   isapi pack examples/security-headers.ts
//   isapi-host --filter dist/security-headers/_security-headers.so --vdir /hello=dist/hello/_hello.so
import { HeaderData, SF_NOTIFY_ORDER_HIGH, SF_NOTIFY_SEND_RESPONSE, SimpleFilter, type FilterContext } from 'node-isapi';

export const SECURITY_HEADERS: Record<string, string> = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Content-Security-Policy': "default-src 'self'",
};

class SecurityHeaders extends SimpleFilter {
  readonly filterFlags = SF_NOTIFY_SEND_RESPONSE | SF_NOTIFY_ORDER_HIGH;

  HttpFilterProc(fc: FilterContext) {
    const headers = fc.GetData() as HeaderData;
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) headers.SetHeader(`${name}:`, value);
  }
}

export function __FilterFactory__() {
  return new SecurityHeaders();
}
