// A LOG filter: writes an audit line per request to audit.log beside the worker, and masks
// secrets in the query string before the server's own access log records it.
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { SF_NOTIFY_LOG, SimpleFilter, type FilterContext, type LogData } from 'node-isapi';

const AUDIT_FILE = process.env.ISAPI_AUDIT_LOG ?? path.join(path.dirname(process.execPath), 'logs', 'audit.log');
const SECRET = /((?:password|token|secret)=)[^&]*/gi;

class AuditLog extends SimpleFilter {
  readonly filterFlags = SF_NOTIFY_LOG;

  HttpFilterProc(fc: FilterContext) {
    const log = fc.GetData() as LogData;
    if (SECRET.test(log.Parameters)) log.Parameters = log.Parameters.replace(SECRET, '$1***');
    SECRET.lastIndex = 0;
    const line = [new Date().toISOString(), log.ClientHostName, log.ClientUserName || '-', log.Operation, log.Target, log.Parameters || '-', log.HttpStatus].join(' ');
    appendFileSync(AUDIT_FILE, line + '\n');
  }
}

export function __FilterFactory__() {
  return new AuditLog();
}
