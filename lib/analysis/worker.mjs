// The fallback entry of an analysis worker thread (parallel.ts), for when the worker cannot be
// bundled: worker threads do not inherit tsx's loader, so this registers it, then imports the
// TypeScript worker body (worker-main.ts).
// The tasks' JavaScript dependencies are loaded before tsx's loader is registered: through its
// hooks every one of apache-arrow's ~250 modules costs a round trip to the hooks thread (≈0.3 s
// more per worker); the TypeScript imports below then find them in the module cache.
import "apache-arrow"
import "parquet-wasm/node"
import "@stdlib/stats-base-dists-t-cdf"
import { register } from "tsx/esm/api"

register()
await import("./worker-main.ts")
