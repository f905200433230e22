/**
 * Completing a config whose tokenizer is on the Hub (`tokenizer: { hub, revision }`): its files are
 * fetched into the Hugging Face cache when the run starts (a few small files; none when they are
 * cached already, so a second run makes no request) and `tokenizer` points at the snapshot folder.
 *
 *   withHubTokenizer(config)   // tokenizer: "~/.cache/huggingface/hub/models--EleutherAI--pythia-160m/snapshots/<commit>"
 */
import { Effect } from "effect"
import { tokenizerFilesOf, type Config } from "../../pipeline/config.ts"
import { RunError } from "../../pipeline/errors.ts"
import { Hub } from "../../lib/hub/index.ts"

export const withHubTokenizer = (config: Config): Effect.Effect<Config, RunError, Hub> =>
  Effect.gen(function* () {
    const src = config.tokenizerSource
    if (src.hub === undefined) return config
    const hub = yield* Hub
    const where = `tokenizer ${src.hub.repo}@${src.hub.revision}`
    const fetched = yield* hub
      .fetchTokenizer(src.hub.repo, src.hub.revision)
      .pipe(Effect.mapError((e) => new RunError({ message: `${where}: ${e.message}` })))
    const files = tokenizerFilesOf(fetched.folder)
    if (typeof files === "string") return yield* Effect.fail(new RunError({ message: `${where}: ${files}` }))
    return { ...config, tokenizer: fetched.folder, tokenizerFiles: files }
  })
