/**
 * The tokenize stage's contract: what other stages may know of it. One unit per dataset
 * (`dataset=D`), writing the dataset's windows and tokens.
 *
 *   ctx.input(tokenizeUnit("press")).read(tokensFile("press"), { columns: ["category"] })
 */
import { col, defineTable, type TableRow } from "../../lib/tables.ts"
import type { TableFile, UnitRef } from "../../pipeline/stage.ts"

export const TOKENIZE = "tokenize"

export const tokenizeUnit = (dataset: string): UnitRef => ({ stage: TOKENIZE, id: `dataset=${dataset}` })

/**
 * `tokens/dataset=D/tokens.parquet`: one row per predicted token, in token_index order.
 *   token_index  0…N−1, stable, document order; row i of every score file of D is this token
 *   seq_id       the window that predicts it (windows/dataset=D/windows.parquet)
 *   position     its position inside that window (≥ 1: the logits at position−1 predict it)
 *   token_id     tokenizer id
 *   doc_id       document id (file name, jsonl id, …)
 *   char_start, char_end  character span in the document text (UTF-16 code units, end exclusive)
 *   token_text   the document text of that span
 *   tag          the dataset's own tag of the word the token belongs to (Brown POS), else null
 *   category     punctuation | number | function | content | piece
 */
export const Tokens = defineTable("tokens", {
  token_index: col.int32(),
  seq_id: col.int32(),
  position: col.int32(),
  token_id: col.int32(),
  doc_id: col.utf8(),
  char_start: col.int32(),
  char_end: col.int32(),
  token_text: col.utf8(),
  tag: col.utf8({ nullable: true }),
  category: col.utf8(),
})
export type TokenRow = TableRow<typeof Tokens>

/**
 * `windows/dataset=D/windows.parquet`: one row per model input window, in seq_id order.
 *   seq_id        0…W−1
 *   doc_id        document id
 *   input_ids     the window's token ids (≤ context_length), prepended tokens included
 *   first_target  position of the first predicted token in the window; positions first_target…len−1
 *                 are predicted, and their token_index values are consecutive and increase with seq_id
 *   first_token_index  token_index of the token at first_target
 */
export const Windows = defineTable("windows", {
  seq_id: col.int32(),
  doc_id: col.utf8(),
  input_ids: col.int32List(),
  first_target: col.int32(),
  first_token_index: col.int32(),
})
export type WindowRow = TableRow<typeof Windows>

export const tokensFile = (dataset: string): TableFile => ({ path: `tokens/dataset=${dataset}/tokens.parquet`, table: Tokens })
export const windowsFile = (dataset: string): TableFile => ({ path: `windows/dataset=${dataset}/windows.parquet`, table: Windows })
