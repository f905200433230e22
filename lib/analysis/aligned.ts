/**
 * Aligned score files: the score files of one dataset hold the same tokens in the same row
 * groups, so block g of a (model, dataset) is row group g of every checkpoint's file. `aligned`
 * checks that from the footers of readers the stage opened (through its run store).
 */
import { Effect } from "effect"
import { firstLine, UnitError } from "../../pipeline/errors.ts"
import type { TableFile, UnitInput } from "../../pipeline/stage.ts"
import type { RowGroupReader } from "../../pipeline/store.ts"
import { columnChunks, type ColumnChunks } from "./chunks.ts"

/** The common row-group layout of aligned score files. */
export interface AlignedLayout {
  /** Rows of each row group (the same in every file). */
  readonly groupRows: ReadonlyArray<number>
  /** Row where each row group starts (= token_index of its first token). */
  readonly groupStart: ReadonlyArray<number>
  readonly tokens: number
}

/** What alignedLayout compares of a file: a RowGroupReader, or the ColumnChunks of its footer. */
export type FileLayout = Pick<RowGroupReader, "path" | "numRows" | "rowGroupRows">

/**
 * The layout shared by every reader, or a UnitError naming two files that differ.
 * @param readers [models][checkpoints], at least one
 */
export const alignedLayout = (readers: ReadonlyArray<ReadonlyArray<FileLayout>>, what: string): Effect.Effect<AlignedLayout, UnitError> =>
  Effect.suspend(() => {
    const first = readers[0][0]
    for (const r of readers.flat()) {
      const same = r.rowGroupRows.length === first.rowGroupRows.length && r.rowGroupRows.every((n, g) => n === first.rowGroupRows[g])
      if (!same) {
        return Effect.fail(
          new UnitError({
            message:
              `${what}: score files are not aligned: ${r.path} has ${r.numRows} rows in ${r.rowGroupRows.length} row groups, ` +
              `${first.path} has ${first.numRows} in ${first.rowGroupRows.length} (were they scored with different tokens or row_group_size?)`,
          }),
        )
      }
    }
    const groupStart: number[] = []
    let acc = 0
    for (const n of first.rowGroupRows) {
      groupStart.push(acc)
      acc += n
    }
    return Effect.succeed({ groupRows: first.rowGroupRows, groupStart, tokens: first.numRows })
  })

/** The logprob column of row group g of a score file: [rows] float32, nats. */
export const readLogprobs = (r: RowGroupReader, g: number, what: string): Effect.Effect<Float32Array, UnitError> =>
  Effect.tryPromise({
    try: async () => {
      const t = await r.read(g, ["logprob"])
      const col = t.getChild("logprob")
      if (col === null) throw new Error("no logprob column")
      const v = col.toArray()
      if (!(v instanceof Float32Array)) throw new Error(`logprob is ${col.type}, expected float32`)
      return v
    },
    catch: (e) => new UnitError({ message: `${what}: cannot read row group ${g} of ${r.path}: ${firstLine(e)}`, cause: e }),
  })

/**
 * The logprob chunks of score files on the local disk, from their footers (chunks.ts: a few
 * numbers per row group, nothing kept in parquet-wasm's memory): [models][checkpoints], each
 * with the file's local path. A file chunks.ts cannot read is opened through the run store
 * instead, for its row groups only (its blocks are then read through parquet-wasm: `plain`
 * false), which also gives the store's own errors for a missing or unreadable file.
 * @param files [models][checkpoints] a unit's input and the file of it to read
 */
export const logprobChunks = (
  files: ReadonlyArray<ReadonlyArray<{ readonly input: UnitInput; readonly file: TableFile }>>,
  what: string,
): Effect.Effect<ColumnChunks[][], UnitError> =>
  Effect.forEach(files, (row) =>
    Effect.forEach(row, ({ input, file }) =>
      Effect.flatMap(input.localPath(file.path), (path) =>
        Effect.orElse(
          Effect.try(() => columnChunks(path, "logprob")),
          () =>
            Effect.scoped(
              Effect.map(input.open(file), (r): ColumnChunks => {
                const none = new Float64Array(r.rowGroupRows.length)
                return { path, numRows: r.numRows, rowGroupRows: r.rowGroupRows, offset: none, size: none, plain: false }
              }),
            ),
        ),
      ),
    ),
  )
