/**
 * Arrow tables from typed arrays without per-row work (pure): the hot paths write columns of
 * hundreds of thousands of rows per block, where `tableFromArrays` on JS values would dominate.
 *
 *   tableOf(schema, { threshold: f64(th), class: dict(codes, CLASSES), peak_step: i32(v, valid) })
 *
 * A column's type is taken from the schema, so dictionary ids match.
 */
import * as arrow from "apache-arrow"

/** A column before it knows its Arrow type: built by tableOf from the schema's field. */
export type Column = (type: arrow.DataType) => arrow.Data

/** An Arrow validity bitmap and its null count (see `validity`). */
export interface Validity {
  readonly nullBitmap?: Uint8Array
  readonly nullCount: number
}

/**
 * The validity bitmap (LSB first) of `valid` (1 = present), without one when all are present.
 * Columns sharing one `valid` array (a block's slope, intercept, r², p-value) can share one.
 */
export const validity = (valid: Uint8Array, length = valid.length): Validity => {
  const bits = new Uint8Array((length + 7) >> 3)
  let nulls = 0
  for (let i = 0; i < length; i++) {
    if (valid[i]) bits[i >> 3] |= 1 << (i & 7)
    else nulls++
  }
  return nulls === 0 ? { nullCount: 0 } : { nullBitmap: bits, nullCount: nulls }
}

const bitmap = (valid: Uint8Array | Validity | undefined, length: number): Validity =>
  valid === undefined ? { nullCount: 0 } : valid instanceof Uint8Array ? validity(valid, length) : valid

/** Float64 column; rows where valid[i] = 0 are null (or a precomputed `validity`). */
export const f64 = (values: Float64Array, valid?: Uint8Array | Validity): Column => (type) =>
  arrow.makeData({ type: type as arrow.Float64, length: values.length, data: values, ...bitmap(valid, values.length) })

/** Int32 column; rows where valid[i] = 0 are null (or a precomputed `validity`). */
export const i32 = (values: Int32Array, valid?: Uint8Array | Validity): Column => (type) =>
  arrow.makeData({ type: type as arrow.Int32, length: values.length, data: values, ...bitmap(valid, values.length) })

/** Boolean column from 0/1 bytes. */
export const bool = (values: Uint8Array): Column => (type) => {
  const bits = new Uint8Array((values.length + 7) >> 3)
  for (let i = 0; i < values.length; i++) if (values[i]) bits[i >> 3] |= 1 << (i & 7)
  return arrow.makeData({ type: type as arrow.Bool, length: values.length, data: bits, nullCount: 0 })
}

/** Dictionary-encoded string column: row i is dictionary[codes[i]]. */
export const dict = (codes: Int8Array, dictionary: ReadonlyArray<string>): Column => (type) => {
  const t = type as arrow.Dictionary<arrow.Utf8, arrow.Int8>
  return arrow.makeData({
    type: t,
    length: codes.length,
    data: codes,
    nullCount: 0,
    dictionary: arrow.vectorFromArray([...dictionary], new arrow.Utf8()),
  })
}

/** Plain string column (small tables). */
export const utf8 = (values: ReadonlyArray<string>): Column => (type) => {
  const b = arrow.makeBuilder({ type: type as arrow.Utf8, nullValues: [] })
  for (const v of values) b.append(v)
  return b.finish().flush()
}

/** Float64 column with nulls, from JS numbers (small tables); null stands for missing. */
export const f64OrNull = (values: ReadonlyArray<number | null>): Column => {
  const v = new Float64Array(values.length)
  const valid = new Uint8Array(values.length)
  values.forEach((x, i) => {
    if (x !== null) {
      v[i] = x
      valid[i] = 1
    }
  })
  return f64(v, valid)
}

/** A table with exactly `schema`'s fields, in order. Every column must have the same length. */
export const tableOf = (schema: arrow.Schema, columns: Record<string, Column>): arrow.Table => {
  const children = schema.fields.map((field) => {
    const col = columns[field.name]
    if (col === undefined) throw new Error(`tableOf: no column ${field.name}`)
    return col(field.type)
  })
  const length = children.length ? children[0].length : 0
  for (const [k, c] of children.entries()) {
    if (c.length !== length) throw new Error(`tableOf: column ${schema.fields[k].name} has ${c.length} rows, expected ${length}`)
  }
  const data = arrow.makeData({ type: new arrow.Struct(schema.fields), length, nullCount: 0, children })
  return new arrow.Table(schema, [new arrow.RecordBatch(schema, data)])
}
