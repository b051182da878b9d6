export { AUTH_HEADER, authInterceptor, mac, makeToken } from "./auth.js";
export { type ClientConfig, loadConfig, parseConfig, resolveConfigPath, validate } from "./config.js";
export { explain, KueueError } from "./errors.js";
export { FINAL_STATES, isFinal, jobSpec, type JobOptions, KueueClient } from "./client.js";
export * from "./gen/kueue/v1/common_pb.js";
export * from "./gen/kueue/v1/job_service_pb.js";
export * from "./gen/kueue/v1/cluster_service_pb.js";
