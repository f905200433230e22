/**
 * Checks the committed zoo with ONNX Runtime (the runtime the pipeline scores with):
 *
 *   npx tsx tools/zoo/check.ts
 *
 * - every zoo/<size>/step-<step>.onnx loads, has inputs input_ids and attention_mask, and returns
 *   finite logits [batch, seq, 1024] with fp16 initializers only;
 * - the last checkpoint of every size reproduces the validation perplexity of each held-out group
 *   that train.py recorded in zoo/metrics.json (same windows; relative difference < 1e-3);
 * - the tokenize stage, reading a held-out group as format `brown` with `prepend: "<|endoftext|>"`
 *   at context 128 / stride 64, predicts exactly the tokens train.py scored (same ids, same order);
 * - the total size of zoo/ is under 24 MB.
 * Needs tools/zoo/work/valid-*.bin (written by tools/zoo/tokenizer.ts).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as ort from "onnxruntime-node"
import { globSync } from "tinyglobby"
import { loadTokenizer } from "../../lib/tokenizer-load.ts"
import { tokenizeDataset } from "../../stages/tokenize/index.ts"
import { CORPUS_DIR, GROUP_GLOBS, REPO_ROOT } from "./split.ts"

const ZOO = path.join(REPO_ROOT, "zoo")
const WORK = path.join(REPO_ROOT, "tools", "zoo", "work")
const CONTEXT = 128
const STRIDE = 64
const VOCAB = 1024
const EOT = VOCAB - 1
const BUDGET = 24_000_000

interface Metrics {
  sizes: Array<{ name: string; checkpoints: Array<{ step: number; valid_ppl: Record<string, number> }> }>
}

/** Windows and score masks exactly as train.py's eval_windows (see its docstring). */
const windows = (ids: Uint16Array): Array<{ w: number[]; m: boolean[] }> => {
  const starts: number[] = []
  ids.forEach((x, i) => x === EOT && starts.push(i))
  const out: Array<{ w: number[]; m: boolean[] }> = []
  starts.forEach((s, k) => {
    const doc = Array.from(ids.subarray(s, k + 1 < starts.length ? starts[k + 1] : ids.length))
    const n = doc.length
    const firstEnd = Math.min(n, CONTEXT)
    const w = Array<number>(CONTEXT).fill(EOT)
    doc.slice(0, firstEnd).forEach((x, i) => (w[i] = x))
    out.push({ w, m: Array.from({ length: CONTEXT }, (_, i) => i < firstEnd - 1) })
    let done = firstEnd
    while (done < n) {
      const end = Math.min(n, done + STRIDE)
      const lo = CONTEXT - 1 - (end - done)
      out.push({ w: doc.slice(end - CONTEXT, end), m: Array.from({ length: CONTEXT }, (_, i) => i >= lo && i < CONTEXT - 1) })
      done = end
    }
  })
  return out
}

const perplexity = async (s: ort.InferenceSession, wins: ReturnType<typeof windows>, batch = 32): Promise<number> => {
  let nll = 0
  let count = 0
  for (let b = 0; b < wins.length; b += batch) {
    const part = wins.slice(b, b + batch)
    const ids = BigInt64Array.from(part.flatMap((x) => x.w).map(BigInt))
    const dims = [part.length, CONTEXT]
    const out = await s.run({ input_ids: new ort.Tensor("int64", ids, dims), attention_mask: new ort.Tensor("int64", new BigInt64Array(ids.length).fill(1n), dims) })
    const logits = out.logits.data as Float32Array
    part.forEach(({ w, m }, r) => {
      for (let i = 0; i < CONTEXT - 1; i++) {
        if (!m[i]) continue
        const row = logits.subarray((r * CONTEXT + i) * VOCAB, (r * CONTEXT + i + 1) * VOCAB)
        let max = -Infinity
        for (const v of row) max = Math.max(max, v)
        let sum = 0
        for (const v of row) sum += Math.exp(v - max)
        nll -= row[w[i + 1]] - max - Math.log(sum)
        count++
      }
    })
  }
  return Math.exp(nll / count)
}

const duBytes = (dir: string): number =>
  fs.readdirSync(dir, { withFileTypes: true }).reduce((n, e) => n + (e.isDirectory() ? duBytes(path.join(dir, e.name)) : fs.statSync(path.join(dir, e.name)).size), 0)

/** The tokenize stage's predicted token ids for each group equal the ids train.py evaluated. */
const stageAgrees = async (problems: string[]) => {
  const tok = await loadTokenizer(path.join(ZOO, "tokenizer.json"))
  for (const [group, glob] of Object.entries(GROUP_GLOBS)) {
    const files = globSync([glob], { cwd: CORPUS_DIR, absolute: true }).sort()
    const dataset = { name: group, format: "brown" as const, files, text_field: "text", id_field: "id" }
    const r = await tokenizeDataset(dataset, tok, { contextLength: CONTEXT, stride: STRIDE, prepend: "<|endoftext|>" })
    const stage = Array.from(r.tokens.getChild("token_id")!.toArray() as ArrayLike<number>, Number)
    const ours = Array.from(new Uint16Array(fs.readFileSync(path.join(WORK, `valid-${group}.bin`)).buffer.slice(0))).filter((x) => x !== EOT)
    const same = stage.length === ours.length && stage.every((x, i) => x === ours[i])
    console.log(`${group}: tokenize stage predicts ${stage.length} tokens, train.py scored ${ours.length}: ${same ? "identical" : "DIFFERENT"}`)
    if (!same) problems.push(`${group}: the tokenize stage's tokens differ from train.py's`)
  }
}

const main = async () => {
  const metrics = JSON.parse(fs.readFileSync(path.join(ZOO, "metrics.json"), "utf8")) as Metrics
  const problems: string[] = []
  await stageAgrees(problems)
  const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1 }
  for (const size of metrics.sizes) {
    const files = fs.readdirSync(path.join(ZOO, size.name)).filter((f) => /^step-\d+\.onnx$/.test(f))
    const steps = files.map((f) => Number(f.match(/\d+/)![0])).sort((a, b) => a - b)
    if (JSON.stringify(steps) !== JSON.stringify(size.checkpoints.map((c) => c.step))) problems.push(`${size.name}: files do not match metrics.json`)
    for (const step of steps) {
      const s = await ort.InferenceSession.create(path.join(ZOO, size.name, `step-${step}.onnx`), opts)
      if (s.inputNames.join() !== "input_ids,attention_mask" || s.outputNames.join() !== "logits") problems.push(`${size.name}/${step}: signature`)
      const ids = BigInt64Array.from([EOT, 464, 300, 12, 7, 99, 1000].map(BigInt))
      const out = await s.run({ input_ids: new ort.Tensor("int64", ids, [1, 7]), attention_mask: new ort.Tensor("int64", new BigInt64Array(7).fill(1n), [1, 7]) })
      if (out.logits.dims.join() !== "1,7,1024" || !(out.logits.data as Float32Array).every(Number.isFinite)) problems.push(`${size.name}/${step}: logits`)
      await s.release()
    }
    const last = size.checkpoints[size.checkpoints.length - 1]
    const s = await ort.InferenceSession.create(path.join(ZOO, size.name, `step-${last.step}.onnx`), opts)
    for (const [group, want] of Object.entries(last.valid_ppl)) {
      const ids = new Uint16Array(fs.readFileSync(path.join(WORK, `valid-${group}.bin`)).buffer.slice(0))
      const got = await perplexity(s, windows(ids))
      const rel = Math.abs(got / want - 1)
      console.log(`${size.name} step ${last.step} ${group}: onnxruntime ${got.toFixed(3)}, train.py ${want} (rel. diff ${rel.toExponential(1)})`)
      if (rel > 1e-3) problems.push(`${size.name}/${group}: perplexity ${got} vs ${want}`)
    }
    console.log(`${size.name}: ${steps.length} checkpoints load and run`)
  }
  const bytes = duBytes(ZOO)
  console.log(`zoo/: ${bytes} bytes`)
  if (bytes >= BUDGET) problems.push(`zoo/ is ${bytes} bytes, over ${BUDGET}`)
  if (problems.length) {
    console.error(problems.join("\n"))
    process.exit(1)
  }
  console.log("zoo OK")
}

await main()
