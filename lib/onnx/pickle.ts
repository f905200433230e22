/**
 * A minimal pickle interpreter: the opcodes `torch.save` emits for a state dict (protocol 2, and
 * the few protocol-4 ones a newer pickler may use), nothing else. It never imports or calls
 * anything: GLOBAL / STACK_GLOBAL ask `hooks.global` for an inert value (the caller's allow-list),
 * REDUCE and BUILD hand the marker and its arguments to `hooks.reduce` / `hooks.build`, and
 * BINPERSID hands the persistent id to `hooks.persistentLoad`. An opcode outside the list is an
 * error naming it and its byte position.
 *
 * Worked example: the bytes of `pickle.dumps({"a": (1, "x")}, protocol=2)`
 *
 *   \x80\x02 } q\x00 X\x01\x00\x00\x00a q\x01 K\x01 X\x01\x00\x00\x00x q\x02 \x86 q\x03 s .
 *   PROTO 2, EMPTY_DICT, BINPUT 0, BINUNICODE "a", BINPUT 1, BININT1 1, BINUNICODE "x", BINPUT 2,
 *   TUPLE2, BINPUT 3, SETITEM, STOP
 *
 * give a PyDict whose map is Map { "a" → PyTuple [1, "x"] }.
 */

/**
 * A Python value as this interpreter makes it: null, boolean, number (ints beyond 2^53 are refused),
 * string (BINSTRING read as latin-1), PyTuple, PyList, PyDict, PyGlobal — or whatever the hooks
 * return (torch-zip.ts: storages and tensors). Hence `unknown`: callers narrow with instanceof.
 */
export type PyValue = unknown

export class PyTuple {
  constructor(readonly items: ReadonlyArray<PyValue>) {}
}
export class PyList {
  readonly items: PyValue[] = []
}
export class PyDict {
  /** Keys are strings or numbers (what state dicts use); insertion order is kept. */
  readonly map = new Map<string | number, PyValue>()
  /** The state a BUILD gave it (an OrderedDict's `_metadata`), kept but never interpreted. */
  state: PyValue = undefined
}
/** `module.name` from GLOBAL / STACK_GLOBAL, as the caller's hook chose to represent it. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualified(): string {
    return `${this.module}.${this.name}`
  }
}

export interface PickleHooks {
  /** The value of GLOBAL `module name`; throw to refuse it (the error is the message). */
  readonly global: (module: string, name: string) => PyValue
  /** REDUCE: `callable(*args)`. */
  readonly reduce: (callable: PyValue, args: PyTuple) => PyValue
  /** BINPERSID: the object of a persistent id. */
  readonly persistentLoad: (pid: PyValue) => PyValue
  /** BUILD: set `state` on `obj` (a PyDict's state is stored by the interpreter when this is absent). */
  readonly build?: (obj: PyValue, state: PyValue) => void
}

const MARK = Symbol("mark")

const OPNAMES: Readonly<Record<number, string>> = {
  0x28: "MARK", 0x2e: "STOP", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP", 0x46: "FLOAT", 0x49: "INT", 0x4a: "BININT",
  0x4b: "BININT1", 0x4c: "LONG", 0x4d: "BININT2", 0x4e: "NONE", 0x50: "PERSID", 0x51: "BINPERSID", 0x52: "REDUCE",
  0x53: "STRING", 0x54: "BINSTRING", 0x55: "SHORT_BINSTRING", 0x56: "UNICODE", 0x58: "BINUNICODE", 0x61: "APPEND",
  0x62: "BUILD", 0x63: "GLOBAL", 0x64: "DICT", 0x7d: "EMPTY_DICT", 0x65: "APPENDS", 0x67: "GET", 0x68: "BINGET",
  0x69: "INST", 0x6a: "LONG_BINGET", 0x6c: "LIST", 0x5d: "EMPTY_LIST", 0x6f: "OBJ", 0x70: "PUT", 0x71: "BINPUT",
  0x72: "LONG_BINPUT", 0x73: "SETITEM", 0x74: "TUPLE", 0x29: "EMPTY_TUPLE", 0x75: "SETITEMS", 0x47: "BINFLOAT",
  0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1", 0x86: "TUPLE2",
  0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8a: "LONG1", 0x8b: "LONG4", 0x42: "BINBYTES",
  0x43: "SHORT_BINBYTES", 0x8c: "SHORT_BINUNICODE", 0x8d: "BINUNICODE8", 0x8e: "BINBYTES8", 0x8f: "EMPTY_SET",
  0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX", 0x93: "STACK_GLOBAL", 0x94: "MEMOIZE", 0x95: "FRAME",
  0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
}

/** The name of an opcode byte, for messages (`0x69 INST`). */
export const opcodeName = (op: number): string => `0x${op.toString(16).padStart(2, "0")}${OPNAMES[op] !== undefined ? ` ${OPNAMES[op]}` : ""}`

/** Little-endian two's-complement bytes (LONG1 / LONG4) as a number; beyond 2^53 is an error. */
const decodeLong = (b: Uint8Array): number => {
  if (b.length === 0) return 0
  let v = 0n
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i])
  if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length)
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw new Error(`integer ${v} is beyond 2^53`)
  return Number(v)
}

/**
 * Run the pickle in `bytes` and return the value STOP leaves.
 * @throws Error "<why> at byte <pos>" (an unsupported opcode, a refused global, a truncated stream, …)
 */
export const unpickle = (bytes: Uint8Array, hooks: PickleHooks): PyValue => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const dec = new TextDecoder("utf-8", { fatal: true })
  const stack: Array<PyValue | typeof MARK> = []
  const memo = new Map<number, PyValue>()
  let pos = 0
  let at = 0 // the current opcode's position, for messages
  const fail = (why: string): never => {
    throw new Error(`${why} at byte ${at} of the pickle`)
  }
  const need = (n: number) => {
    if (pos + n > bytes.length) fail(`truncated pickle (needs ${n} more bytes)`)
  }
  const u8 = () => (need(1), bytes[pos++])
  const u16 = () => (need(2), (pos += 2), view.getUint16(pos - 2, true))
  const u32 = () => (need(4), (pos += 4), view.getUint32(pos - 4, true))
  const u64 = () => {
    need(8)
    const v = view.getBigUint64(pos, true)
    pos += 8
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`length ${v} is beyond 2^53`)
    return Number(v)
  }
  const take = (n: number) => (need(n), (pos += n), bytes.subarray(pos - n, pos))
  const line = () => {
    const end = bytes.indexOf(0x0a, pos)
    if (end < 0) fail("truncated pickle (a line without its newline)")
    const s = dec.decode(bytes.subarray(pos, end))
    pos = end + 1
    return s
  }
  const text = (b: Uint8Array) => {
    try {
      return dec.decode(b)
    } catch {
      return fail("a string that is not UTF-8")
    }
  }
  const pop = (): PyValue => {
    if (stack.length === 0) fail("pop from an empty stack")
    const v = stack.pop()
    if (v === MARK) fail("a MARK where a value was expected")
    return v as PyValue
  }
  const top = (): PyValue => {
    if (stack.length === 0) fail("an empty stack")
    const v = stack[stack.length - 1]
    if (v === MARK) fail("a MARK where a value was expected")
    return v as PyValue
  }
  /** The values above the topmost MARK (removed with it). */
  const popMark = (): PyValue[] => {
    const i = stack.lastIndexOf(MARK)
    if (i < 0) fail("no MARK on the stack")
    const items = stack.splice(i) as PyValue[]
    items.shift()
    return items
  }
  const push = (v: PyValue) => stack.push(v)
  const dictKey = (k: PyValue): string | number => {
    if (typeof k === "string" || typeof k === "number") return k
    return fail(`a dict key of type ${k === null ? "None" : typeof k} (only str and int keys are supported)`)
  }
  const setItems = (d: PyValue, kv: PyValue[]) => {
    if (!(d instanceof PyDict)) fail("SETITEM(S) on something that is not a dict")
    for (let i = 0; i + 1 < kv.length; i += 2) (d as PyDict).map.set(dictKey(kv[i]), kv[i + 1])
  }
  const append = (l: PyValue, vs: PyValue[]) => {
    if (!(l instanceof PyList)) fail("APPEND(S) on something that is not a list")
    ;(l as PyList).items.push(...vs)
  }
  const get = (i: number) => {
    if (!memo.has(i)) fail(`memo ${i} is not set`)
    return memo.get(i)
  }
  const global = (module: string, name: string) => {
    try {
      return hooks.global(module, name)
    } catch (e) {
      return fail(e instanceof Error ? e.message : String(e))
    }
  }
  const guard = <A>(f: () => A): A => {
    try {
      return f()
    } catch (e) {
      return fail(e instanceof Error ? e.message : String(e))
    }
  }

  for (;;) {
    at = pos
    const op = u8()
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail("pickle protocol above 5")
        break
      case 0x95: // FRAME: a length prefix only
        u64()
        break
      case 0x7d: // EMPTY_DICT
        push(new PyDict())
        break
      case 0x5d: // EMPTY_LIST
        push(new PyList())
        break
      case 0x29: // EMPTY_TUPLE
        push(new PyTuple([]))
        break
      case 0x28: // MARK
        stack.push(MARK)
        break
      case 0x74: // TUPLE
        push(new PyTuple(popMark()))
        break
      case 0x85: // TUPLE1
        push(new PyTuple([pop()]))
        break
      case 0x86: {
        // TUPLE2
        const b = pop()
        push(new PyTuple([pop(), b]))
        break
      }
      case 0x87: {
        // TUPLE3
        const c = pop()
        const b = pop()
        push(new PyTuple([pop(), b, c]))
        break
      }
      case 0x58: // BINUNICODE
        push(text(take(u32())))
        break
      case 0x8c: // SHORT_BINUNICODE
        push(text(take(u8())))
        break
      case 0x8d: // BINUNICODE8
        push(text(take(u64())))
        break
      case 0x54: // BINSTRING (Python 2 str: bytes, read as latin-1 text the way torch's loader does)
        push(Buffer.from(take(u32())).toString("latin1"))
        break
      case 0x55: // SHORT_BINSTRING
        push(Buffer.from(take(u8())).toString("latin1"))
        break
      case 0x4a: // BININT
        need(4)
        push(view.getInt32(pos, true))
        pos += 4
        break
      case 0x4b: // BININT1
        push(u8())
        break
      case 0x4d: // BININT2
        push(u16())
        break
      case 0x8a: // LONG1
        push(guard(() => decodeLong(take(u8()))))
        break
      case 0x8b: // LONG4
        push(guard(() => decodeLong(take(u32()))))
        break
      case 0x47: // BINFLOAT (big-endian)
        need(8)
        push(view.getFloat64(pos, false))
        pos += 8
        break
      case 0x4e: // NONE
        push(null)
        break
      case 0x88: // NEWTRUE
        push(true)
        break
      case 0x89: // NEWFALSE
        push(false)
        break
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line()
        push(global(module, line()))
        break
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop()
        const module = pop()
        if (typeof module !== "string" || typeof name !== "string") fail("STACK_GLOBAL without two strings")
        push(global(module as string, name as string))
        break
      }
      case 0x71: // BINPUT
        memo.set(u8(), top())
        break
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top())
        break
      case 0x94: // MEMOIZE
        memo.set(memo.size, top())
        break
      case 0x68: // BINGET
        push(get(u8()))
        break
      case 0x6a: // LONG_BINGET
        push(get(u32()))
        break
      case 0x51: {
        // BINPERSID
        const pid = pop()
        push(guard(() => hooks.persistentLoad(pid)))
        break
      }
      case 0x52: {
        // REDUCE
        const args = pop()
        const callable = pop()
        if (!(args instanceof PyTuple)) fail("REDUCE arguments that are not a tuple")
        push(guard(() => hooks.reduce(callable, args as PyTuple)))
        break
      }
      case 0x62: {
        // BUILD
        const state = pop()
        const obj = top()
        if (hooks.build !== undefined) guard(() => hooks.build!(obj, state))
        else if (obj instanceof PyDict) obj.state = state
        else fail("BUILD on something that is not a dict")
        break
      }
      case 0x73: {
        // SETITEM
        const v = pop()
        const k = pop()
        setItems(top(), [k, v])
        break
      }
      case 0x75: {
        // SETITEMS
        const kv = popMark()
        setItems(top(), kv)
        break
      }
      case 0x61: {
        // APPEND
        const v = pop()
        append(top(), [v])
        break
      }
      case 0x65: {
        // APPENDS
        const vs = popMark()
        append(top(), vs)
        break
      }
      case 0x2e: // STOP
        if (stack.length !== 1) fail(`STOP with ${stack.length} values on the stack`)
        return pop()
      default:
        fail(`unsupported pickle opcode ${opcodeName(op)}`)
    }
  }
}
