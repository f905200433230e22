/**
 * e^x for the per-token kernels (pure): perplexities p = e^(−log-prob), the t table's p-values,
 * geometric means. Math.exp is a call into V8's C++ runtime (~14 ns on the 2-core machine);
 * this is ~6 ns inline, and the kernels take 30 exponentials per token per stage.
 *
 * Method (the usual table-driven reduction, as in musl's exp):
 *   k = round(x · 128 / ln 2),  r = x − k · ln2/128   (ln2/128 split hi + lo: r is exact to ~1e-20)
 *   e^x = 2^(k div 128) · 2^((k mod 128)/128) · P(r),   |r| ≤ ln2/256
 * with P the degree-5 Taylor polynomial of e^r (truncation ≤ r⁶/720 < 5e-19) and both powers of
 * two from tables. Error: at most 2 units in the last place against Math.exp (the tests sweep
 * x over ±700 and the float32 log-probs of 0…30 nats), i.e. ≤ 4.5e-16 relative — far below the
 * 1e-9 to which the regressions agree with statsmodels. Outside (−700, 700), and for NaN and
 * ±∞, it is Math.exp itself.
 *
 * Every kernel that derives a perplexity from a log-prob uses this one function, so regress and
 * classify see the same p to the bit.
 */

const N = 128
const SHIFT_BITS = 7
/** 2^(j/128), j = 0…127 */
const FRACTION = Float64Array.from({ length: N }, (_, j) => Math.pow(2, j / N))
/** 2^(i − 1024), i = 0…2047 (2^-1024 is subnormal; only i ≥ 14 is used, for x > −700) */
const POWER = Float64Array.from({ length: 2048 }, (_, i) => Math.pow(2, i - 1024))
const INV = N / Math.LN2
/** ln 2 / 128 in two parts (fdlibm's ln2_hi has 32 trailing zero bits, so k · hi is exact). */
const LN2_HI = 6.9314718036912381649e-1 / N
const LN2_LO = 1.9082149292705877e-10 / N
/** Adding and subtracting 1.5 · 2^52 rounds a double of magnitude < 2^51 to the nearest integer. */
const ROUND = 6755399441055744

/** e^x, within 2 ulp of Math.exp(x) (see the module comment). */
export const exp = (x: number): number => {
  if (!(x > -700 && x < 700)) return Math.exp(x)
  const k = x * INV + ROUND - ROUND
  const r = x - k * LN2_HI - k * LN2_LO
  const ki = k | 0
  const p = 1 + r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120)))))
  return FRACTION[ki & (N - 1)] * POWER[(ki >> SHIFT_BITS) + 1024] * p
}
