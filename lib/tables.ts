/**
 * One definition per table: `defineTable` gives the Arrow schema, the row type, rows → Arrow,
 * Arrow → rows, and column-wise construction from typed arrays for the hot paths. A reader checks
 * a file against the definition, so a table written by another version (a missing column, another
 * type) is one clear error instead of `undefined` values.
 *
 *   export const Checkpoints = defineTable("checkpoints", {
 *     model: col.utf8(), step: col.int32(), ppl: col.float64({ nullable: true }),
 *   })
 *   type CheckpointRow = TableRow<typeof Checkpoints>     // { model: string; step: number; ppl: number | null }
 *   Checkpoints.fromRows([{ model: "s", step: 1, ppl: 12.5 }])   // arrow.Table with exactly that schema
 *   Checkpoints.toRows(table)                              // rows back (throws on a schema mismatch)
 *   Checkpoints.fromColumns({ model: utf8(names), step: i32(steps), ppl: f64(v, valid) })  // no per-row work
 */
import * as arrow from "apache-arrow"
import { f64OrNull, tableOf, type Column } from "./columns.ts"

/** How a column is stored, and what a row holds for it. */
export interface ColumnSpec<T = unknown> {
  readonly type: () => arrow.DataType
  readonly nullable: boolean
  /** Row value → a column of many rows (small tables). */
  readonly column: (values: ReadonlyArray<T>) => Column
  /** Arrow value → row value. */
  readonly value: (v: unknown) => T
  /** The stored type is one this column accepts (e.g. dictionary or plain strings). */
  readonly accepts: (t: arrow.DataType) => boolean
}

type Nullable<T, N extends boolean> = N extends true ? T | null : T

const num = (v: unknown): number => (typeof v === "bigint" ? Number(v) : (v as number))

const isUtf8 = (t: arrow.DataType) => arrow.DataType.isUtf8(t) || arrow.DataType.isLargeUtf8(t) || (arrow.DataType.isDictionary(t) && arrow.DataType.isUtf8(t.dictionary))

const spec = <T, N extends boolean>(
  type: () => arrow.DataType,
  nullable: N,
  column: (values: ReadonlyArray<Nullable<T, N>>, type: arrow.DataType) => arrow.Data,
  value: (v: unknown) => T,
  accepts: (t: arrow.DataType) => boolean,
): ColumnSpec<Nullable<T, N>> => ({
  type,
  nullable,
  column: (values) => (t) => column(values, t),
  value: (v) => (v === null || v === undefined ? (null as Nullable<T, N>) : (value(v) as Nullable<T, N>)),
  accepts,
})

const viaBuilder = (values: ReadonlyArray<unknown>, type: arrow.DataType): arrow.Data => {
  const b = arrow.makeBuilder({ type, nullValues: [null, undefined] })
  for (const v of values) b.append(v)
  return b.finish().flush()
}

/** Column kinds. `nullable: true` makes the row type `T | null` (missing is null, never NaN or −1). */
export const col = {
  utf8: <N extends boolean = false>(o?: { readonly nullable?: N }) =>
    spec<string, N>(() => new arrow.Utf8(), (o?.nullable ?? false) as N, viaBuilder, (v) => String(v), isUtf8),
  /** Strings stored with a dictionary (Int8 codes): for a handful of values repeated on every row. */
  dictUtf8: <N extends boolean = false>(o?: { readonly nullable?: N }) =>
    spec<string, N>(() => new arrow.Dictionary(new arrow.Utf8(), new arrow.Int8()), (o?.nullable ?? false) as N, viaBuilder, (v) => String(v), isUtf8),
  int32: <N extends boolean = false>(o?: { readonly nullable?: N }) =>
    spec<number, N>(() => new arrow.Int32(), (o?.nullable ?? false) as N, viaBuilder, num, (t) => arrow.DataType.isInt(t)),
  float64: <N extends boolean = false>(o?: { readonly nullable?: N }) =>
    spec<number, N>(
      () => new arrow.Float64(),
      (o?.nullable ?? false) as N,
      (values, t) => (o?.nullable ? f64OrNull(values as ReadonlyArray<number | null>)(t) : arrow.makeData({ type: t as arrow.Float64, data: Float64Array.from(values as number[]), length: values.length, nullCount: 0 })),
      num,
      (t) => arrow.DataType.isFloat(t) || arrow.DataType.isInt(t),
    ),
  float32: <N extends boolean = false>(o?: { readonly nullable?: N }) =>
    spec<number, N>(() => new arrow.Float32(), (o?.nullable ?? false) as N, viaBuilder, num, (t) => arrow.DataType.isFloat(t)),
  bool: <N extends boolean = false>(o?: { readonly nullable?: N }) =>
    spec<boolean, N>(() => new arrow.Bool(), (o?.nullable ?? false) as N, viaBuilder, (v) => v === true, (t) => arrow.DataType.isBool(t)),
  /** A list of int32 per row (token ids); rows hold Int32Array. */
  int32List: <N extends boolean = false>(o?: { readonly nullable?: N }) =>
    spec<Int32Array, N>(
      () => new arrow.List(new arrow.Field("item", new arrow.Int32(), false)),
      (o?.nullable ?? false) as N,
      (values, t) => viaBuilder(values.map((v) => (v === null ? null : Array.from(v as Int32Array))), t),
      (v) => Int32Array.from(v as Iterable<number>),
      (t) => arrow.DataType.isList(t),
    ),
}

type Columns = Record<string, ColumnSpec<any>>
export type RowOf<C extends Columns> = { -readonly [K in keyof C]: C[K] extends ColumnSpec<infer T> ? T : never }

export interface TableDef<C extends Columns = Columns> {
  readonly name: string
  readonly columns: C
  /** The Arrow schema, fields in definition order. */
  readonly schema: arrow.Schema
  /** A table of these rows (small tables: the values go through Arrow builders). */
  readonly fromRows: (rows: ReadonlyArray<RowOf<C>>) => arrow.Table
  /** A table from one prepared column per field (columns.ts: f64, i32, dict, …), without per-row work. */
  readonly fromColumns: (columns: { readonly [K in keyof C]: Column }) => arrow.Table
  /** The rows of a table read back; throws when a column is missing or of another type. */
  readonly toRows: (table: arrow.Table) => Array<RowOf<C>>
  /** Throws, naming the column, when `table` lacks a column of this definition or stores it as another type. */
  readonly check: (table: arrow.Table, columns?: ReadonlyArray<keyof C & string>) => void
}

export type TableRow<T> = T extends TableDef<infer C> ? RowOf<C> : never

/** Define a table: its name (for messages) and its columns in order. */
export const defineTable = <const C extends Columns>(name: string, columns: C): TableDef<C> => {
  const names = Object.keys(columns) as Array<keyof C & string>
  const build = () => new arrow.Schema(names.map((n) => new arrow.Field(n, columns[n].type(), columns[n].nullable)))
  // A dictionary type carries an id; tables with dictionary columns get a fresh schema each time
  // (as Arrow's own builders do), plain ones share one.
  const shared = build()
  const hasDictionary = shared.fields.some((f) => arrow.DataType.isDictionary(f.type))
  const schemaOf = () => (hasDictionary ? build() : shared)
  const check = (table: arrow.Table, only: ReadonlyArray<keyof C & string> = names) => {
    for (const n of only) {
      const field = table.schema.fields.find((f) => f.name === n)
      if (field === undefined) throw new Error(`${name} table: no column ${n} (columns: ${table.schema.fields.map((f) => f.name).join(", ")})`)
      if (!columns[n].accepts(field.type)) throw new Error(`${name} table: column ${n} is ${field.type}, expected ${columns[n].type()}`)
    }
  }
  return {
    name,
    columns,
    get schema() {
      return schemaOf()
    },
    fromRows: (rows) =>
      tableOf(
        schemaOf(),
        Object.fromEntries(names.map((n) => [n, columns[n].column(rows.map((r) => r[n]))])),
      ),
    fromColumns: (cols) => tableOf(schemaOf(), cols as Record<string, Column>),
    toRows: (table) => {
      check(table)
      const vectors = names.map((n) => [n, table.getChild(n)!] as const)
      const out: Array<RowOf<C>> = new Array(table.numRows)
      for (let i = 0; i < table.numRows; i++) {
        const row: Record<string, unknown> = {}
        for (const [n, v] of vectors) row[n] = columns[n].value(v.get(i))
        out[i] = row as RowOf<C>
      }
      return out
    },
    check,
  }
}
