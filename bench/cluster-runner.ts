/**
 * One runner of bench/cluster.ts: serveRunner over the no-op registry (bench/cluster-noop-registry.ts),
 * one unit at a time, until SIGTERM/SIGINT.
 *
 *   node --import tsx bench/cluster-runner.ts <postgres url> <port>
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { serveRunner } from "../pipeline/cluster/serve.ts"

const [url, port] = process.argv.slice(2)
NodeRuntime.runMain(
  serveRunner({
    url,
    host: "127.0.0.1",
    port: Number(port),
    name: `noop-${port}`,
    jobs: 1,
    overrides: {},
    registry: new URL("./cluster-noop-registry.ts", import.meta.url).href,
  }),
)
