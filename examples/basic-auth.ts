// HTTP Basic authentication as a filter: AUTHENTICATION checks the credentials the client
// sent and maps the user name; ACCESS_DENIED adds the challenge to every 401.
// Users come from ISAPI_BASIC_AUTH_USERS ("alice:secret,bob:hunter2"), read when the worker starts.
import {
  AuthentData,
  SF_NOTIFY_ACCESS_DENIED,
  SF_NOTIFY_AUTHENTICATION,
  SF_NOTIFY_PREPROC_HEADERS,
  SF_STATUS_REQ_FINISHED,
  SimpleFilter,
  type FilterContext,
  type HeaderData,
} from 'node-isapi';

const REALM = 'node-isapi example';
const CHALLENGE = `WWW-Authenticate: Basic realm="${REALM}"\r\n`;

function users(): Map<string, string> {
  const spec = process.env.ISAPI_BASIC_AUTH_USERS ?? 'alice:secret';
  return new Map(spec.split(',').filter(Boolean).map((pair) => pair.split(':', 2) as [string, string]));
}

class BasicAuth extends SimpleFilter {
  readonly filterFlags = SF_NOTIFY_PREPROC_HEADERS | SF_NOTIFY_AUTHENTICATION | SF_NOTIFY_ACCESS_DENIED;
  private readonly accounts = users();

  private deny(fc: FilterContext) {
    const body = '401 Unauthorized\n';
    fc.SendResponseHeader('401 Unauthorized', `${CHALLENGE}Content-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n`);
    fc.WriteClient(body);
    return SF_STATUS_REQ_FINISHED;
  }

  async HttpFilterProc(fc: FilterContext) {
    switch (fc.NotificationType) {
      case SF_NOTIFY_PREPROC_HEADERS: {
        // Every request must carry credentials (AUTHENTICATION may only run once per connection).
        const authorization = await (fc.GetData() as HeaderData).GetHeader('Authorization:');
        if (!authorization?.startsWith('Basic ')) return this.deny(fc);
        return;
      }
      case SF_NOTIFY_AUTHENTICATION: {
        const auth = fc.GetData() as AuthentData;
        if (this.accounts.get(auth.User) !== auth.Password) return this.deny(fc);
        // What the application sees as REMOTE_USER / AUTH_USER.
        auth.User = `${auth.User}@example`;
        return;
      }
      case SF_NOTIFY_ACCESS_DENIED:
        fc.AddResponseHeaders(CHALLENGE);
        return;
    }
  }
}

export function __FilterFactory__() {
  return new BasicAuth();
}
