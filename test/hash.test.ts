/**
 * File fingerprints (pipeline/hash.ts): content digests relative to the config's folder, sampled
 * above 64 MiB, cached by (path, size, mtime, inode); and the words status uses for a changed key.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { explainKeyChange, Fingerprints, hashFile, paramsDiff, SAMPLE_ABOVE, type KeyParts } from "../pipeline/hash.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-hash-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

describe("hashFile", () => {
  it("a small file: the sha256 of its bytes (FIPS 180-2's 'abc' vector)", () => {
    fs.writeFileSync(path.join(tmp, "abc.txt"), "abc")
    expect(hashFile(path.join(tmp, "abc.txt"))).toBe("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  })

  it("a file above 64 MiB: its size and three 1 MiB samples; a copy has the same digest", () => {
    const big = path.join(tmp, "big.bin")
    const fd = fs.openSync(big, "w")
    fs.ftruncateSync(fd, SAMPLE_ABOVE + 4096)
    fs.writeSync(fd, Buffer.from("header"), 0, 6, 0)
    fs.closeSync(fd)
    const d = hashFile(big)
    expect(d).toMatch(/^sampled-sha256:[0-9a-f]{64}$/)
    fs.copyFileSync(big, path.join(tmp, "copy.bin"))
    expect(hashFile(path.join(tmp, "copy.bin"))).toBe(d)
    const poke = (at: number) => {
      const f = fs.openSync(path.join(tmp, "copy.bin"), "r+")
      fs.writeSync(f, Buffer.from([7]), 0, 1, at)
      fs.closeSync(f)
    }
    poke(Math.floor(SAMPLE_ABOVE / 2)) // inside the middle sample
    expect(hashFile(path.join(tmp, "copy.bin"))).not.toBe(d)
    fs.copyFileSync(big, path.join(tmp, "copy.bin"))
    poke(10 << 20) // between samples: the documented blind spot of sampling
    expect(hashFile(path.join(tmp, "copy.bin"))).toBe(d)
  })
})

describe("Fingerprints", () => {
  it("paths relative to the config's folder; digests cached by path, size, mtime and inode", () => {
    const base = path.join(tmp, "project")
    fs.mkdirSync(path.join(base, "data"), { recursive: true })
    const file = path.join(base, "data/a.txt")
    fs.writeFileSync(file, "abc")
    const then = new Date("2025-01-01T00:00:00Z") // whole seconds: utimes can set it back exactly
    fs.utimesSync(file, then, then)
    const cache = path.join(tmp, "fingerprints.json")
    const f = new Fingerprints(base, cache)
    expect(f.of([file, path.join(tmp, "abc.txt"), path.join(base, "gone.txt")])).toEqual({
      "data/a.txt": "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      "../abc.txt": "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      "gone.txt": "missing",
    })
    f.save()
    // Same size and mtime and inode: the cached digest is used without reading (here: on purpose stale).
    fs.writeFileSync(file, "xyz")
    fs.utimesSync(file, then, then)
    expect(new Fingerprints(base, cache).digest(file)).toBe("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    // Another mtime: read again.
    fs.utimesSync(file, then, new Date(then.getTime() + 5000))
    expect(new Fingerprints(base, cache).digest(file)).toBe("sha256:3608bca1e44ea6c4d268eb6db02260269892c0b42b86bbf1e77a6fa16c3c9282")
  })
})

describe("explainKeyChange", () => {
  const parts: KeyParts = { stage: "score", version: 1, params: "p1", inputs: { "tokenize/dataset=a": "k1" }, files: { "m.onnx": "sha256:1" } }
  it("names each part that changed, most telling first", () => {
    expect(explainKeyChange(undefined, parts)).toMatch(/older version/)
    expect(explainKeyChange(parts, { ...parts, version: 2 })).toBe("key changed: code version (score 1 → 2)")
    expect(explainKeyChange(parts, { ...parts, params: "p2", files: { "m.onnx": "missing" } })).toBe("key changed: config slice; file m.onnx (missing)")
    const slice = { old: { row_group_size: 65536, models: [{ name: "s", steps: [1, 2] }] }, now: { row_group_size: 4, models: [{ name: "s", steps: [1, 3] }], entropy: true } }
    expect(explainKeyChange(parts, { ...parts, params: "p2" }, slice)).toBe("key changed: config slice (entropy: absent → true, models[0].steps[1]: 2 → 3, row_group_size: 65536 → 4)")
    expect(paramsDiff({ steps: [1, 2] }, { steps: [1, 2, 3] })).toEqual(["steps: [1,2] → [1,2,3]"])
    expect(explainKeyChange(parts, { ...parts, inputs: { "tokenize/dataset=a": "k2" } })).toBe("key changed: upstream tokenize/dataset=a")
    expect(explainKeyChange(parts, { ...parts, inputs: {} })).toBe("key changed: no longer reads tokenize/dataset=a")
  })
})
