/**
 * The regress stage's contract: one unit per (model, dataset), id `model=M/dataset=D`, writing
 * one part per block of tokens (row group g of the score files → part g).
 */
import { Regressions } from "../../lib/analysis/part-tables.ts"
import type { TableFile, UnitRef } from "../../pipeline/stage.ts"

export { Regressions, type RegressionRow } from "../../lib/analysis/part-tables.ts"

export const REGRESS = "regress"
export const regressUnit = (model: string, dataset: string): UnitRef => ({ stage: REGRESS, id: `model=${model}/dataset=${dataset}` })

/** `part-00003.parquet` */
export const partName = (g: number) => `part-${String(g).padStart(5, "0")}.parquet`

export const regressionsDir = (model: string, dataset: string) => `regressions/model=${model}/dataset=${dataset}`
export const regressionsPart = (model: string, dataset: string, g: number): TableFile => ({ path: `${regressionsDir(model, dataset)}/${partName(g)}`, table: Regressions })
