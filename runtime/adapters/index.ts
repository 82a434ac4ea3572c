// Adapters that run ordinary web apps as ISAPI extensions, unchanged but for one export.
export { requestTarget, stripScriptName, type AdapterOptions, type RequestTarget } from './common';
export {
  fetchExtension,
  serveFetchRequest,
  type FetchEnv,
  type FetchExtensionOptions,
  type FetchHandler,
} from './fetch';
export {
  httpExtension,
  isapiRequest,
  IsapiSocket,
  serveNodeRequest,
  type HttpExtensionOptions,
  type NodeApp,
  type NodeRequestHandler,
} from './node_http';
