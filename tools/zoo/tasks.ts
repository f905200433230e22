/**
 * Demo downstream tasks from HELD-OUT Brown text only (never the training split), written to
 * zoo/tasks/:
 *
 *   npx tsx tools/zoo/tasks.ts
 *
 * - determiner_noun.jsonl (format `pairs`): a held-out sentence where this/that (tag dt) precedes a
 *   singular noun (nn) or these/those (dts) a plural noun (nns), against the same sentence with the
 *   determiner's number flipped.  "This rule is…" / "These rule is…"
 * - subject_verb.jsonl (format `pairs`): a held-out sentence where is/was/has (bez/bedz/hvz)
 *   directly follows a singular noun subject (nn) or are/were/have (ber/bed/hv) a plural one (nns),
 *   against the same sentence with the verb's number flipped.  "The jury was…" / "The jury were…"
 * - next_word.json (format `bigbench`): a sentence prefix and its true next word against 3
 *   distractors with the same tag and the closest frequency in the held-out texts.
 *
 * Deterministic: candidates are collected in text-id order and sampled with a seeded PRNG.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { parseBrown, type BrownDoc, type BrownWord } from "./brown.ts"
import { REPO_ROOT, corpusFile, heldOutIds, isHeldOut } from "./split.ts"

const SEED = 20230501
const PER_TASK = 300
const MAX_SENTENCE_WORDS = 40
const OUT = path.join(REPO_ROOT, "zoo", "tasks")

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const shuffle = <T>(xs: ReadonlyArray<T>, rand: () => number): T[] => {
  const a = [...xs]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[a[i], a[j]] = [a[j], a[i]]
  }
  return a
}

interface Sentence {
  readonly doc: string
  readonly text: string
  /** Words with spans relative to `text`. */
  readonly words: ReadonlyArray<BrownWord>
}

const SENTENCE_END = new Set([".", "?", "!"])

/** Sentences of a document: split after . ? ! (tag ".") and at paragraph breaks. */
const sentences = (id: string, doc: BrownDoc): Sentence[] => {
  const out: Sentence[] = []
  let cur: BrownWord[] = []
  const flush = () => {
    if (cur.length === 0) return
    const start = cur[0].start
    const end = cur[cur.length - 1].end
    out.push({ doc: id, text: doc.text.slice(start, end), words: cur.map((w) => ({ ...w, start: w.start - start, end: w.end - start })) })
    cur = []
  }
  for (const [i, w] of doc.words.entries()) {
    if (cur.length > 0 && doc.text.slice(doc.words[i - 1].end, w.start).includes("\n")) flush()
    cur.push(w)
    if (w.tag === "." && SENTENCE_END.has(w.text)) flush()
  }
  flush()
  return out
}

const matchCase = (like: string, word: string): string =>
  like[0] === like[0].toUpperCase() ? word[0].toUpperCase() + word.slice(1) : word

const replaceWord = (s: Sentence, i: number, word: string): string =>
  s.text.slice(0, s.words[i].start) + matchCase(s.words[i].text, word) + s.text.slice(s.words[i].end)

interface Pair {
  sentence_good: string
  sentence_bad: string
  phenomenon: string
  /** The word that was changed, good → bad. */
  changed: string
  doc_id: string
}

const usable = (s: Sentence) => s.words.length >= 4 && s.words.length <= MAX_SENTENCE_WORDS && !s.text.includes("\n")

const NUMBER_FLIP: Record<string, { tag: string; noun: "nn" | "nns"; flip: string }> = {
  this: { tag: "dt", noun: "nn", flip: "these" },
  that: { tag: "dt", noun: "nn", flip: "those" },
  these: { tag: "dts", noun: "nns", flip: "this" },
  those: { tag: "dts", noun: "nns", flip: "that" },
}

const determinerNoun = (ss: ReadonlyArray<Sentence>): Pair[] => {
  const out: Pair[] = []
  for (const s of ss.filter(usable)) {
    for (let i = 0; i + 1 < s.words.length; i++) {
      const d = s.words[i]
      const rule = NUMBER_FLIP[d.text.toLowerCase()]
      if (!rule || d.tag !== rule.tag) continue
      // The noun must be the head: the next word is the noun and no noun follows it.
      const n = s.words[i + 1]
      const after = s.words[i + 2]
      if (n.tag !== rule.noun || !/^[a-z]+$/i.test(n.text)) continue
      if (after && /^nns?(\$)?(-|$)/.test(after.tag)) continue
      out.push({
        sentence_good: s.text,
        sentence_bad: replaceWord(s, i, rule.flip),
        phenomenon: `determiner_noun.${d.text.toLowerCase()}`,
        changed: `${d.text} ${n.text} → ${matchCase(d.text, rule.flip)} ${n.text}`,
        doc_id: s.doc,
      })
    }
  }
  return out
}

const VERB_FLIP: Record<string, { tag: string; noun: "nn" | "nns"; flip: string }> = {
  is: { tag: "bez", noun: "nn", flip: "are" },
  are: { tag: "ber", noun: "nns", flip: "is" },
  was: { tag: "bedz", noun: "nn", flip: "were" },
  were: { tag: "bed", noun: "nns", flip: "was" },
  has: { tag: "hvz", noun: "nn", flip: "have" },
  have: { tag: "hv", noun: "nns", flip: "has" },
}
/** Tags a noun phrase may hold before its head noun. */
const NP_TAGS = /^(at|dt|dts|dti|ap|cd|od|jj|jjr|jjt|jjs|pp\$|np\$|nn\$|nn|nr|vbn|vbg|abn)$/
/** The noun phrase must open with a determiner, a possessive or a quantifier… */
const NP_OPENERS = /^(at|dt|dts|dti|ap|cd|abn|pp\$|np\$)$/
/** …at the sentence start or after one of these (never a preposition: in "the members of the
 * committee are", "committee" is not the subject). */
const BEFORE_NP = /^(,|cc|cs|vbd|vbz|``|''|rb|--|:)$/

const subjectVerb = (ss: ReadonlyArray<Sentence>): Pair[] => {
  const out: Pair[] = []
  for (const s of ss.filter(usable)) {
    for (let i = 1; i < s.words.length; i++) {
      const v = s.words[i]
      const rule = VERB_FLIP[v.text]
      if (!rule || v.tag !== rule.tag) continue
      const n = s.words[i - 1]
      if (n.tag !== rule.noun || !/^[a-z]+$/i.test(n.text)) continue
      // Walk back over the noun phrase to its opener.
      let j = i - 2
      while (j >= 0 && NP_TAGS.test(s.words[j].tag)) j--
      const opener = s.words[j + 1]
      if (j + 1 === i - 1 || !NP_OPENERS.test(opener.tag)) continue
      if (j >= 0 && !BEFORE_NP.test(s.words[j].tag)) continue
      out.push({
        sentence_good: s.text,
        sentence_bad: replaceWord(s, i, rule.flip),
        phenomenon: `subject_verb.${v.text}`,
        changed: `${n.text} ${v.text} → ${n.text} ${rule.flip}`,
        doc_id: s.doc,
      })
    }
  }
  return out
}

/** Up to `n` items, balanced over `key` (round-robin over keys in sorted order), seeded. */
const balancedSample = <T>(xs: ReadonlyArray<T>, key: (x: T) => string, n: number, rand: () => number): T[] => {
  const byKey = new Map<string, T[]>()
  for (const x of shuffle(xs, rand)) byKey.set(key(x), [...(byKey.get(key(x)) ?? []), x])
  const keys = [...byKey.keys()].sort()
  const out: T[] = []
  for (let round = 0; out.length < n; round++) {
    let added = false
    for (const k of keys) {
      const x = byKey.get(k)![round]
      if (x !== undefined && out.length < n) out.push(x), (added = true)
    }
    if (!added) break
  }
  return out
}

const CLOZE_TAGS = new Set(["nn", "nns", "jj", "vb", "vbd", "vbn", "vbg", "rb", "in"])
const MIN_PREFIX_WORDS = 6

interface ClozeExample {
  input: string
  target_scores: Record<string, number>
  tag: string
  doc_id: string
}

const nextWord = (ss: ReadonlyArray<Sentence>, rand: () => number): ClozeExample[] => {
  // Frequencies of lower-cased alphabetic words per tag, over the held-out texts.
  const freq = new Map<string, Map<string, number>>()
  for (const s of ss)
    for (const w of s.words) {
      if (!CLOZE_TAGS.has(w.tag) || !/^[a-z]+$/.test(w.text)) continue
      const m = freq.get(w.tag) ?? new Map<string, number>()
      m.set(w.text, (m.get(w.text) ?? 0) + 1)
      freq.set(w.tag, m)
    }
  const candidates: Array<{ s: Sentence; i: number }> = []
  for (const s of ss.filter(usable))
    for (let i = MIN_PREFIX_WORDS; i < s.words.length; i++) {
      const w = s.words[i]
      if (CLOZE_TAGS.has(w.tag) && /^[a-z]+$/.test(w.text) && (freq.get(w.tag)!.get(w.text) ?? 0) >= 2) candidates.push({ s, i })
    }
  const picked = balancedSample(candidates, (c) => c.s.words[c.i].tag, PER_TASK, rand)
  picked.sort((a, b) => (a.s.doc < b.s.doc ? -1 : a.s.doc > b.s.doc ? 1 : 0))
  return picked.map(({ s, i }) => {
    const w = s.words[i]
    const f = freq.get(w.tag)!
    const target = Math.log(f.get(w.text)!)
    // The 10 words of the same tag closest in log frequency (ties by word), then 3 of them at random.
    const near = [...f.entries()]
      .filter(([x, c]) => x !== w.text && c >= 2)
      .sort((a, b) => Math.abs(Math.log(a[1]) - target) - Math.abs(Math.log(b[1]) - target) || (a[0] < b[0] ? -1 : 1))
      .slice(0, 10)
    const distractors = shuffle(near, rand).slice(0, 3).map(([x]) => x)
    const options = shuffle([w.text, ...distractors], rand)
    return {
      input: s.text.slice(0, s.words[i - 1].end),
      target_scores: Object.fromEntries(options.map((o) => [o, o === w.text ? 1 : 0])),
      tag: w.tag,
      doc_id: s.doc,
    }
  })
}

const main = () => {
  const ids = heldOutIds()
  if (!ids.every(isHeldOut)) throw new Error("a task text is not held out")
  const ss = ids.flatMap((id) => sentences(id, parseBrown(fs.readFileSync(corpusFile(id), "utf8"))))
  fs.mkdirSync(OUT, { recursive: true })
  const writeJsonl = (name: string, rows: ReadonlyArray<object>) =>
    fs.writeFileSync(path.join(OUT, name), rows.map((r) => JSON.stringify(r)).join("\n") + "\n")

  const dn = determinerNoun(ss)
  const sv = subjectVerb(ss)
  const rand = prng(SEED)
  const byDoc = (a: Pair, b: Pair) => (a.doc_id < b.doc_id ? -1 : a.doc_id > b.doc_id ? 1 : 0)
  const dnPicked = balancedSample(dn, (p) => p.phenomenon, PER_TASK, rand).sort(byDoc)
  const svPicked = balancedSample(sv, (p) => p.phenomenon, PER_TASK, rand).sort(byDoc)
  writeJsonl("determiner_noun.jsonl", dnPicked)
  writeJsonl("subject_verb.jsonl", svPicked)

  const cloze = nextWord(ss, rand)
  const task = {
    name: "brown_next_word",
    description:
      "Next word of a held-out Brown sentence: the true word against 3 words of the same part-of-speech tag with the closest frequency in the held-out texts.",
    keywords: ["multiple choice", "zero-shot", "language modeling"],
    metrics: ["multiple_choice_grade"],
    task_prefix: "",
    example_input_prefix: "",
    example_output_prefix: " ",
    // Score the continuation only: listing the four choices in the prompt (BIG-bench's default) would
    // spend context on text these tiny models cannot use.
    append_choices_to_input: false,
    examples: cloze,
  }
  fs.writeFileSync(path.join(OUT, "next_word.json"), JSON.stringify(task, null, 1) + "\n")

  const count = (rows: ReadonlyArray<{ phenomenon?: string; tag?: string }>, k: "phenomenon" | "tag") =>
    Object.fromEntries([...new Set(rows.map((r) => r[k]!))].sort().map((v) => [v, rows.filter((r) => r[k] === v).length]))
  console.log(
    JSON.stringify({
      held_out_texts: ids.length,
      sentences: ss.length,
      determiner_noun: { candidates: dn.length, written: dnPicked.length, by: count(dnPicked, "phenomenon") },
      subject_verb: { candidates: sv.length, written: svPicked.length, by: count(svPicked, "phenomenon") },
      next_word: { written: cloze.length, by: count(cloze, "tag") },
    }),
  )
}

main()
