/**
 * Arrow ⇄ Parquet write/read speed and size: parquet-wasm (zstd, what the store uses) against
 * @dsnp/parquetjs row by row (snappy), when that package is installed (`npm i --no-save @dsnp/parquetjs`).
 * 2M rows × 3 numeric columns (int32 token_index, int32 token_id, float32 logprob), like a score file.
 * Last line: one JSON object.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as arrow from "apache-arrow"
import { readParquetFile, writeParquetFile } from "../pipeline/store.ts"

const rows = Number(process.env.ROWS ?? 2_000_000)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-parquet-"))
let seed = 7
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32)
const token_index = Int32Array.from({ length: rows }, (_, i) => i)
const token_id = Int32Array.from({ length: rows }, () => Math.floor(rand() * rand() * 2048))
const logprob = Float32Array.from({ length: rows }, () => Math.log(rand() + 1e-9) * 3)
const table = arrow.tableFromArrays({ token_index, token_id, logprob })

const time = <A>(f: () => A): [A, number] => {
  const t = performance.now()
  const a = f()
  return [a, (performance.now() - t) / 1000]
}
const out: Record<string, unknown> = { bench: "parquet", rows, columns: 3 }
const wasmFile = path.join(dir, "wasm.parquet")
const [, wWrite] = time(() => writeParquetFile(wasmFile, table))
const [back, wRead] = time(() => readParquetFile(wasmFile))
if (back.numRows !== rows) throw new Error("row count mismatch")
Object.assign(out, { wasm_write_s: +wWrite.toFixed(3), wasm_read_s: +wRead.toFixed(3), wasm_mb: +(fs.statSync(wasmFile).size / 1e6).toFixed(2) })
console.log(`parquet-wasm zstd: write ${wWrite.toFixed(2)} s, read ${wRead.toFixed(2)} s, ${out.wasm_mb} MB`)

try {
  const pq = (await import("@dsnp/parquetjs" as string)) as any
  const schema = new pq.ParquetSchema({
    token_index: { type: "INT32" },
    token_id: { type: "INT32" },
    logprob: { type: "FLOAT", compression: "SNAPPY" },
  })
  const jsFile = path.join(dir, "js.parquet")
  let t = performance.now()
  const w = await pq.ParquetWriter.openFile(schema, jsFile, { compression: "SNAPPY" })
  for (let i = 0; i < rows; i++) await w.appendRow({ token_index: token_index[i], token_id: token_id[i], logprob: logprob[i] })
  await w.close()
  const jsWrite = (performance.now() - t) / 1000
  t = performance.now()
  const r = await pq.ParquetReader.openFile(jsFile)
  const cur = r.getCursor()
  let n = 0
  while (await cur.next()) n++
  await r.close()
  const jsRead = (performance.now() - t) / 1000
  Object.assign(out, {
    parquetjs_write_s: +jsWrite.toFixed(3),
    parquetjs_read_s: +jsRead.toFixed(3),
    parquetjs_mb: +(fs.statSync(jsFile).size / 1e6).toFixed(2),
    write_speedup: +(jsWrite / wWrite).toFixed(1),
  })
  console.log(`@dsnp/parquetjs snappy: write ${jsWrite.toFixed(2)} s, read ${jsRead.toFixed(2)} s (${n} rows), ${out.parquetjs_mb} MB`)
} catch (e) {
  console.log(`@dsnp/parquetjs not installed (${(e as Error).message.split("\n")[0]}); only parquet-wasm measured`)
}
fs.rmSync(dir, { recursive: true, force: true })
console.log(JSON.stringify(out))
