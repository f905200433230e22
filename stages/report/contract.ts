/**
 * The report stage's contract: one unit for the whole run (id `report`) writing one HTML page.
 * The tables it reads are named in their writers' contracts (see ./index.ts reportSources).
 */
import type { UnitRef } from "../../pipeline/stage.ts"

export const REPORT = "report"
export const reportUnit: UnitRef = { stage: REPORT, id: "report" }

/** `report/index.html`: self-contained (inline SVG, no scripts), linking the run's Parquet files relatively. */
export const REPORT_PATH = "report/index.html"
