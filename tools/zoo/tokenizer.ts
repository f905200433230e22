/**
 * Builds zoo/tokenizer.json and the token-id files train.py reads.
 *
 *   npx tsx tools/zoo/tokenizer.ts
 *
 * 1. Rebuilds the natural text of every training text of the split (tools/zoo/split.ts) with the
 *    same Brown parser as the tokenize stage (tools/zoo/brown.ts).
 * 2. Trains a byte-level BPE on it with the `tokenizers` package. Its `train()` takes no trainer
 *    options (it learns ~30k merges), and BPE merges are learned greedily in priority order, so the
 *    first K merges of that run are exactly what a run stopped after K merges would have learned.
 *    We keep those K merges and the tokens they create, put all 256 byte symbols first (ids 0–255 in
 *    byte order, so any input encodes) and `<|endoftext|>` last: 256 + 767 + 1 = 1024 ids.
 * 3. Checks that the file loads with `Tokenizer.fromFile`, that every training and held-out text
 *    round-trips (decode(encode(text)) === text), and that `<|endoftext|>` is one token.
 * 4. Writes tools/zoo/work/train.bin and valid-<group>.bin: uint16 little-endian ids, every document
 *    preceded by `<|endoftext|>` (so a model sees a document start exactly as a run with
 *    `prepend: "<|endoftext|>"` shows it), documents in text-id order; and work/meta.json.
 *
 * Why 1024: at the zoo's scale the tied embedding (vocab × width) is most of a model. With 1024 ids
 * the smallest model (width 16) spends 16k of its 25k parameters there rather than 33k of 41k at
 * 2048, so the sizes differ mainly in their transformer layers, and a family spanning 9× in
 * parameters at 26 fp16 checkpoints per size stays well under the 24 MB budget of zoo/. The price:
 * the training split becomes 18% more tokens than with 2048 ids (1.86M against 1.57M).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { BPE, Tokenizer, byteLevelPreTokenizer, byteLevelProcessing } from "tokenizers"
import { parseBrown } from "./brown.ts"
import { GROUPS, REPO_ROOT, corpusFile, groupIds, heldOutIds, trainingIds } from "./split.ts"

export const VOCAB_SIZE = 1024
export const EOT = "<|endoftext|>"
const WORK = path.join(REPO_ROOT, "tools", "zoo", "work")
const OUT = path.join(REPO_ROOT, "zoo", "tokenizer.json")

/** GPT-2's byte → printable-character map (the byte-level alphabet), in byte order. */
const byteSymbols = (): string[] => {
  const keep: number[] = []
  for (let b = 33; b <= 126; b++) keep.push(b)
  for (let b = 161; b <= 172; b++) keep.push(b)
  for (let b = 174; b <= 255; b++) keep.push(b)
  let extra = 0
  const out: string[] = []
  for (let b = 0; b < 256; b++) out.push(keep.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + extra++))
  return out
}

const docText = (id: string): string => parseBrown(fs.readFileSync(corpusFile(id), "utf8")).text

type Merge = [string, string]
const asPair = (m: unknown): Merge => {
  if (Array.isArray(m)) return [String(m[0]), String(m[1])]
  const s = String(m)
  const i = s.indexOf(" ")
  return [s.slice(0, i), s.slice(i + 1)]
}

/** Train with `tokenizers`, then cut to VOCAB_SIZE as described above. Returns the tokenizer JSON. */
const buildTokenizerJson = (trainFile: string): unknown => {
  const t = new Tokenizer(BPE.empty())
  t.setPreTokenizer(byteLevelPreTokenizer(false, true))
  t.setPostProcessor(byteLevelProcessing(true))
  t.train([trainFile])
  const fullFile = path.join(WORK, "tokenizer-full.json")
  t.save(fullFile)
  const full = JSON.parse(fs.readFileSync(fullFile, "utf8")) as { model: { merges: unknown[] } }

  const vocab: Record<string, number> = {}
  let next = 0
  for (const s of byteSymbols()) vocab[s] = next++
  const merges: Merge[] = []
  for (const m of full.model.merges) {
    if (next === VOCAB_SIZE - 1) break
    const [a, b] = asPair(m)
    if (!(a in vocab) || !(b in vocab)) throw new Error(`merge ${a} ${b} uses a token not yet in the vocabulary`)
    merges.push([a, b])
    if (!(a + b in vocab)) vocab[a + b] = next++
  }
  if (next !== VOCAB_SIZE - 1) throw new Error(`only ${next} tokens from ${full.model.merges.length} merges`)
  vocab[EOT] = next

  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true }
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [
      { id: VOCAB_SIZE - 1, content: EOT, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  }
}

const writeIds = async (tok: Tokenizer, ids: string[], file: string): Promise<{ docs: number; tokens: number }> => {
  const texts = ids.map(docText)
  const encs = await tok.encodeBatch(texts)
  const eot = tok.tokenToId(EOT)!
  const all: number[] = []
  for (const [i, e] of encs.entries()) {
    const doc = e.getIds()
    const back = await tok.decode(doc, false)
    if (back !== texts[i]) throw new Error(`${ids[i]} does not round-trip through the tokenizer`)
    if (doc.some((x) => x < 0 || x >= VOCAB_SIZE - 1)) throw new Error(`${ids[i]}: id out of range`)
    all.push(eot, ...doc)
  }
  const buf = Buffer.alloc(all.length * 2)
  all.forEach((x, i) => buf.writeUInt16LE(x, i * 2))
  fs.writeFileSync(file, buf)
  return { docs: ids.length, tokens: all.length - ids.length }
}

const main = async () => {
  fs.mkdirSync(WORK, { recursive: true })
  const train = trainingIds()
  const trainFile = path.join(WORK, "train.txt")
  fs.writeFileSync(trainFile, train.map(docText).join("\n"))
  const json = buildTokenizerJson(trainFile)
  fs.writeFileSync(OUT, JSON.stringify(json) + "\n")

  const tok = Tokenizer.fromFile(OUT)
  if (tok.getVocabSize(true) !== VOCAB_SIZE) throw new Error(`vocabulary is ${tok.getVocabSize(true)}, not ${VOCAB_SIZE}`)
  const eotEnc = await tok.encode(`${EOT}Hello`)
  if (eotEnc.getIds()[0] !== VOCAB_SIZE - 1) throw new Error(`${EOT} does not encode as one token`)
  const odd = "naïve café — ¿qué? \u{1F600}\t\r\n"
  if ((await tok.decode((await tok.encode(odd)).getIds(), false)) !== odd) throw new Error("non-ASCII text does not round-trip")

  const meta: Record<string, unknown> = { vocab_size: VOCAB_SIZE, eot_id: VOCAB_SIZE - 1, format: "uint16le, each document preceded by eot" }
  const words = (ids: string[]) => ids.reduce((n, id) => n + parseBrown(fs.readFileSync(corpusFile(id), "utf8")).words.length, 0)
  meta.train = { ...(await writeIds(tok, train, path.join(WORK, "train.bin"))), words: words(train), ids: train }
  for (const g of GROUPS) {
    const ids = groupIds(g)
    meta[`valid-${g}`] = { ...(await writeIds(tok, ids, path.join(WORK, `valid-${g}.bin`))), words: words(ids), ids }
  }
  const rest = heldOutIds().filter((id) => !GROUPS.some((g) => groupIds(g).includes(id)))
  meta["held-out-other"] = { ...(await writeIds(tok, rest, path.join(WORK, "valid-other.bin"))), words: words(rest) }
  fs.writeFileSync(path.join(WORK, "meta.json"), JSON.stringify(meta, null, 1) + "\n")
  const brief = Object.fromEntries(
    Object.entries(meta).map(([k, v]) => [k, typeof v === "object" && v !== null ? { ...(v as object), ids: undefined } : v]),
  )
  console.log(JSON.stringify(brief))
  console.log(`wrote ${path.relative(REPO_ROOT, OUT)} (${fs.statSync(OUT).size} bytes)`)
}

await main()
