// node-isapi's runtime: what a user's script imports.
export * from './constants';
export { ECB, headerText, type HeaderInit } from './ecb';
export { ExtensionError, FilterError, ISAPIError, InternalReloadException } from './errors';
export {
  SimpleExtension,
  type Extension,
  type ExtensionVersionInfo,
  type HandlerResult,
  type UserModule,
} from './extension';
