export { AUTH_HEADER, authInterceptor, mac, makeToken } from "./auth.js";
export { type ClientConfig, loadConfig, parseConfig, resolveConfigPath, validate } from "./config.js";
export { type ErrorContext, explain, isConnectionLoss, KueueError } from "./errors.js";
export {
  FINAL_STATES,
  isFinal,
  jobSpec,
  type JobOptions,
  KueueClient,
  WATCH_RECONNECT_MS,
  type WatchOptions,
} from "./client.js";
export * from "./gen/kueue/v1/common_pb.js";
export * from "./gen/kueue/v1/job_service_pb.js";
export * from "./gen/kueue/v1/cluster_service_pb.js";
