// A cluster runner's worker thread: TypeScript through tsx's loader, as bin/trajectories.js does.
import { register } from "tsx/esm/api"
register()
await import("./unit-worker.ts")
