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
export {
  AuthentData,
  FilterContext,
  HeaderData,
  LogData,
  RawData,
  SimpleFilter,
  UrlMapData,
  type AccessDeniedData,
  type Filter,
  type FilterVersionInfo,
  type NotificationData,
} from './filter';
export * from './adapters/index';
export type {
  AppPoolParameters,
  CustomVerb,
  FilterParameters,
  InstallContext,
  InstallHook,
  InstallParameters,
  ResolvedInstallParameters,
  ScriptMapParams,
  VirtualDirParameters,
} from './install_params';
export { ThreadECB, ThreadPoolExtension, type DispatchECB, type ThreadPoolOptions } from './thread_pool_extension';
