/**
 * The cluster's layers: @effect/cluster's socket runners with their state (runners, shard locks,
 * messages, replies) in PostgreSQL (@effect/sql-pg), and @effect/workflow's engine on top.
 *
 *   clientLayer(url)                       the `run --cluster` process: submits, runs nothing
 *   runnerLayer(url, { host, port }, listen, jobs)   a `runner` process: owns shards, runs their units
 *
 * Every runner and client of one cluster uses the same database; the tables (cluster_*) are made by
 * the first process that connects. Settings are ours, never read from the environment (the
 * library's `layerFromEnv` would take HOST and PORT from it).
 */
import * as ClusterWorkflowEngine from "@effect/cluster/ClusterWorkflowEngine"
import { RunnerAddress } from "@effect/cluster/RunnerAddress"
import type * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as NodeClusterSocket from "@effect/platform-node/NodeClusterSocket"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Cause, Duration, Layer, Logger, Option, Redacted, Schedule } from "effect"

/** How often a runner looks for work and for other runners: short, so a lost runner's units move within seconds. */
const common: Partial<ShardingConfig.ShardingConfig["Type"]> = {
  entityMessagePollInterval: Duration.seconds(1),
  entityReplyPollInterval: Duration.millis(100),
  refreshAssignmentsInterval: Duration.seconds(1),
  runnerHealthCheckInterval: Duration.seconds(5),
  // A unit runs for as long as it needs; an entity with a request in flight is never idle.
  entityMaxIdleTime: Duration.minutes(5),
  // Until a runner has registered the unit workflow, messages wait for one (runners may start later).
  entityRegistrationTimeout: Duration.days(7),
}

/**
 * Processes that start together on a new database race to make its tables (a Slurm job array
 * does that): the losers' first statements fail, and they try again a few times. The cluster's
 * own migrations die rather than fail when they lose ("relation cluster_migrations already
 * exists", a duplicate pg_type row), so a defect while the layer is built is retried as well.
 */
const startRetries = Schedule.exponential("250 millis").pipe(Schedule.jittered, Schedule.intersect(Schedule.recurs(4)))
const retryStart = <A, E, R>(layer: Layer.Layer<A, E, R>): Layer.Layer<A, unknown, R> =>
  layer.pipe(
    Layer.catchAllCause((cause) => (Cause.isInterruptedOnly(cause) ? Layer.failCause(cause) : Layer.fail(Cause.squash(cause)))),
    Layer.retry(startRetries),
  )

/** The PostgreSQL client of a `postgres://…` URL (the password, if any, kept redacted). */
export const pgLayer = (url: string, applicationName: string, maxConnections = 8) =>
  PgClient.layer({ url: Redacted.make(url), applicationName, maxConnections })

/** The submitting process: a client of the cluster (it owns no shards). */
export const clientLayer = (url: string) =>
  ClusterWorkflowEngine.layer.pipe(
    Layer.provideMerge(NodeClusterSocket.layer({ clientOnly: true, storage: "sql", shardingConfig: { ...common, runnerAddress: Option.none() } })),
    Layer.provide(pgLayer(url, "trajectories run")),
    retryStart,
  )

/** A runner: listens on `listen` (other runners and clients reach it at `address`), owns shards, runs units. */
export const runnerLayer = (
  url: string,
  address: { readonly host: string; readonly port: number },
  listen?: { readonly host: string; readonly port: number },
  /** Units at once: each holds one connection (its advisory lock) besides the cluster's own 8. */
  jobs = 1,
) =>
  ClusterWorkflowEngine.layer.pipe(
    Layer.provideMerge(
      NodeClusterSocket.layer({
        storage: "sql",
        shardingConfig: {
          ...common,
          runnerAddress: Option.some(RunnerAddress.make(address)),
          runnerListenAddress: listen ? Option.some(RunnerAddress.make(listen)) : Option.none(),
        },
      }),
    ),
    Layer.provideMerge(pgLayer(url, `trajectories runner ${address.host}:${address.port}`, 8 + jobs)),
    retryStart,
  )

/** The cluster's log lines on stderr (with the progress lines; stdout stays for results), in place of the default logger. */
export const stderrLogs = Layer.mergeAll(
  Logger.remove(Logger.defaultLogger),
  Logger.replace(Logger.prettyLoggerDefault, Logger.prettyLogger({ stderr: true })),
)

/** A database failure in one line: what the library says, and what the server or the socket said. */
export const dbFailure = (e: unknown): string => {
  const cause = (e as { cause?: { message?: string; code?: string } })?.cause
  const detail = cause?.message ?? cause?.code
  const top = e instanceof Error ? e.message : String(e)
  return detail && !top.includes(detail) ? `${top} (${detail.split("\n")[0]})` : top.split("\n")[0]
}
