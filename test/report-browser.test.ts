/**
 * The report as a user sees it: fixture runs (every table; some tables missing) go through the
 * real runner the way `trajectories report` runs it (only + force report), and the page is opened
 * in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core, no network).
 *
 * Chromium is a test dependency that .ci/run installs: when it is missing these tests FAIL.
 * A full-page screenshot of the complete run is left at <run>/report/screenshot.png (the test
 * prints its path), for a human to look at.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { Effect, Either } from "effect"
import { type BrowserContext, chromium, type Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Config, parseConfig } from "../pipeline/config.ts"
import type { Manifest } from "../pipeline/manifest.ts"
import { quietSink, type Sink } from "../pipeline/progress.ts"
import { REPORT_PATH, reportStage } from "../stages/report/index.ts"
import { helveticaWidth } from "../stages/report/text-width.ts"
import { FADED } from "../stages/report/interactive.ts"
import { runOnDisk } from "./fixtures/run.ts"
import { type FixtureTable, fixtureConfigYaml, fixtureStages, ODD_TASK } from "./fixtures/report-run.ts"

const CHROMIUM = "/usr/bin/chromium"
/** Figures on the page (stages/report/figures.ts buildFigures). */
const FIGURES = 13
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-report-"))
afterAll(() => {
  if (!process.env.KEEP_REPORT_TEST) fs.rmSync(tmp, { recursive: true, force: true })
})

const fixtureConfig = (run: string): Config => {
  const c = parseConfig(path.join(tmp, "run.yaml"), fixtureConfigYaml(run), { checkPaths: false })
  if (Either.isLeft(c)) throw new Error(c.left.message)
  return c.right
}

/** Write the fixture tables and build the report exactly as `trajectories report` does. */
const buildRun = async (run: string, only?: ReadonlyArray<FixtureTable>, sink: Sink = quietSink): Promise<Config> => {
  const config = fixtureConfig(run)
  const summary = await Effect.runPromise(runOnDisk(config, { stages: [...fixtureStages(only), reportStage], sink }))
  expect(summary.outcomes.filter((o) => o.stage === "report").map((o) => `${o.stage}/${o.id}:${o.outcome}`)).toEqual(["report/report:ran"])
  return config
}

interface PageProblems {
  readonly errors: string[]
  readonly external: string[]
}

/** Open a report page, recording console errors, page errors, failed and non-file requests. */
const open = async (context: BrowserContext, file: string): Promise<{ page: Page; problems: PageProblems }> => {
  const page = await context.newPage()
  const problems: PageProblems = { errors: [], external: [] }
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.errors.push(`console ${m.type()}: ${m.text()}`)
  })
  page.on("pageerror", (e) => problems.errors.push(`page error: ${e.message}`))
  page.on("requestfailed", (r) => problems.errors.push(`request failed: ${r.url()}`))
  page.on("request", (r) => {
    // blob: is the PNG download's own canvas image and file (made in the page).
    if (!/^(file|blob):/.test(r.url())) problems.external.push(r.url())
  })
  await page.goto(pathToFileURL(file).href, { waitUntil: "load" })
  return { page, problems }
}

/** Every `.parquet` link resolves to a file; every in-page `#` link to an element. */
const checkLinks = async (page: Page, reportDir: string): Promise<string[]> => {
  const hrefs: string[] = await page.locator("a[href]").evaluateAll((as) => as.map((a) => a.getAttribute("href") ?? ""))
  const parquet = hrefs.filter((h) => h.endsWith(".parquet"))
  for (const h of parquet) {
    expect(h.startsWith("../"), h).toBe(true)
    expect(fs.existsSync(path.resolve(reportDir, decodeURIComponent(h))), `broken link ${h}`).toBe(true)
  }
  for (const h of hrefs.filter((x) => x.startsWith("#"))) expect(await page.locator(h).count(), h).toBe(1)
  return parquet
}

const duplicateIds = (page: Page): Promise<number> =>
  page.evaluate("(() => { const ids = [...document.querySelectorAll('[id]')].map((e) => e.id); return ids.length - new Set(ids).size })()") as Promise<number>

let context: BrowserContext | undefined
let full: Config
let partial: Config
const partialLog: string[] = []

beforeAll(async () => {
  full = await buildRun("full")
  partial = await buildRun("partial", ["checkpoints", "task_metrics", "correlations", "r2_differences"], { isTTY: false, write: (s) => void partialLog.push(s) })
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium; .ci/run does this)`)
  }
  context = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(tmp, "profile-")), {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1280, height: 900 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--no-first-run",
    ],
  })
})
afterAll(async () => {
  await context?.close()
})

describe("report in headless Chromium", () => {
  it("a complete run: every figure as SVG with axes and marks, captions, working links and downloads, no errors, a screenshot", async () => {
    const file = path.join(full.runDir, REPORT_PATH)
    const bytes = fs.statSync(file).size
    console.log(`report page: ${(bytes / 1024).toFixed(0)} KB (${file})`)
    expect(bytes).toBeLessThan(3 * 1024 * 1024)
    const m = JSON.parse(fs.readFileSync(path.join(full.runDir, "manifest.json"), "utf8")) as Manifest
    // The page, and each figure's SVG and CSV (downloads.ts), as the unit's outputs.
    const outputs = m.units["report/report"]?.files.map((x) => x.path) ?? []
    expect(outputs.at(-1)).toBe(REPORT_PATH)
    expect(outputs).toHaveLength(1 + 2 * FIGURES)
    for (const o of outputs) expect(fs.existsSync(path.join(full.runDir, o)), o).toBe(true)

    const { page, problems } = await open(context!, file)
    const figures = page.locator("section.fig")
    expect(await figures.count()).toBe(FIGURES)
    // Each figure's live view replaces its static SVG once it nears the viewport (live.ts).
    for (let i = 0; i < FIGURES; i++) {
      await figures.nth(i).scrollIntoViewIfNeeded()
      await figures.nth(i).locator(".chart.live > .vega-view > svg").waitFor({ timeout: 20_000 })
    }
    for (let i = 0; i < FIGURES; i++) {
      const f = figures.nth(i)
      const id = (await f.getAttribute("id")) ?? `figure ${i + 1}`
      expect(await f.locator(":scope > figure > .chart.live > .vega-view > svg").count(), id).toBe(1)
      expect(await f.locator("p.hint").textContent(), id).toMatch(/^Hover a mark for its exact values/)
      const box = await f.locator("svg").boundingBox()
      expect(box!.width, id).toBeGreaterThan(300)
      expect(box!.height, id).toBeGreaterThan(100)
      expect(await f.locator("svg g.role-axis").count(), id).toBeGreaterThanOrEqual(2)
      expect(await f.locator("svg g.role-mark path").count(), id).toBeGreaterThan(3)
      const caption = (await f.locator("figcaption").textContent()) ?? ""
      expect(caption.length, id).toBeGreaterThan(40)
      expect(caption, id).toMatch(/Source: .*\.parquet/)
      expect(await f.locator(".note").filter({ hasText: "Left out" }).count(), id).toBe(0)
      // SVG and CSV links to files beside the page; the script added a PNG button.
      for (const kind of ["svg", "csv"]) {
        const href = (await f.locator(`.downloads a.${kind}`).getAttribute("href")) ?? ""
        expect(fs.existsSync(path.resolve(path.dirname(file), decodeURIComponent(href))), `${id}: ${href}`).toBe(true)
      }
      expect(await f.locator(".downloads button.png").count(), id).toBe(1)
    }
    // The PNG link saves the figure drawn on a canvas at twice its size.
    const [download] = await Promise.all([page.waitForEvent("download"), page.locator("#fig-margins .downloads button.png").click()])
    expect(download.suggestedFilename()).toBe("fig-margins.png")
    const png = fs.readFileSync((await download.path())!)
    expect([...png.subarray(1, 4)].map((c) => String.fromCharCode(c)).join("")).toBe("PNG")
    const svgWidth = (await page.locator("#fig-margins .chart svg").getAttribute("width"))!
    expect(png.readUInt32BE(16)).toBe(Math.ceil(Number(svgWidth) * 2))
    // Provenance: the stages the report read, each with its units and their wall time; the config collapsed.
    const stages = await page.locator("#provenance table.stage-times tbody tr td:first-child").allTextContents()
    expect(stages).toEqual(expect.arrayContaining(["aggregate", "classify", "correlate", "checks", "sequences"]))
    expect(await page.locator("#provenance details").getAttribute("open")).toBeNull()
    expect(await page.locator("#provenance details pre").textContent()).toContain('"run": "full"')
    // Figure 1 rings the two flagged checkpoints; the checks are listed below.
    expect(await page.locator("#checks table tbody tr").count()).toBe(2)
    // Task names are text, not markup.
    expect(await page.locator("hard").count()).toBe(0)
    expect(await page.locator("#fig-correlations svg").textContent()).toContain(ODD_TASK)
    expect(await page.locator("#summary table").first().locator("tbody tr").count()).toBe(3)

    const links = await checkLinks(page, path.dirname(file))
    // Every table of the fixture is linked: 11 files, sequences/noise.parquet, mauve.parquet, mauve_curves.parquet, and the 2 files of each of the 4 λ folders.
    expect(new Set(links).size).toBe(22)
    expect(links.map(decodeURIComponent)).toContain("../sequences/lambda=1_-1/trajectories.parquet")
    const inventory = (await page.locator("#summary table.inventory").textContent()) ?? ""
    expect(inventory).toContain("sequences/lambda=-1_1/generations.parquet")
    expect(inventory).toContain("sequences/noise.parquet")
    expect(await duplicateIds(page)).toBe(0)

    // The text widths used to lay out the SVGs match what the browser draws (within 3%).
    const measured = (await page.evaluate(
      "(() => { const c = document.createElement('canvas').getContext('2d'); c.font = '12px Helvetica, Arial, sans-serif'; return c.measureText('validation perplexity (reversed)').width })()",
    )) as number
    expect(Math.abs(measured / helveticaWidth("validation perplexity (reversed)", 12) - 1)).toBeLessThan(0.03)

    const shot = path.join(full.runDir, "report", "screenshot.png")
    await page.screenshot({ path: shot, fullPage: true })
    expect(fs.statSync(shot).size).toBeGreaterThan(50_000)
    console.log(`report screenshot: ${shot}`)
    expect(problems).toEqual({ errors: [], external: [] })
    await page.close()
  })

  it("live figures: a tooltip gives a drawn row's exact values, the legend toggles sizes, Ctrl + wheel zooms, the CSV link downloads the data drawn", async () => {
    const file = path.join(full.runDir, REPORT_PATH)
    const csvFile = path.join(full.runDir, "report/data/fig-validation-ppl.csv")
    const csv = fs.readFileSync(csvFile, "utf8").trim().split("\n")
    const { page, problems } = await open(context!, file)
    const fig = page.locator("#fig-validation-ppl")
    await fig.locator(".chart.live svg").waitFor()
    // Hover a dot: the tooltip's fields and values are one row of the figure's CSV, as written.
    const dotPath = fig.locator(".chart.live g.mark-symbol.role-mark path").nth(5)
    await dotPath.scrollIntoViewIfNeeded()
    const dot = (await dotPath.boundingBox())!
    await page.mouse.move(dot.x + dot.width / 2, dot.y + dot.height / 2)
    const tip = page.locator("#vg-tooltip-element.visible")
    await tip.waitFor()
    const keys = await tip.locator("td.key").allTextContents()
    const values = await tip.locator("td.value").allTextContents()
    const header = csv[0].split(",")
    expect(keys).toEqual(header)
    expect(csv.slice(1)).toContain(values.join(","))
    // The legend: clicking the first size keeps its lines and fades the others; clicking it again shows all.
    const opacities = () => fig.locator(".chart.live g.mark-line path").evaluateAll((ps) => ps.map((p) => `${p.getAttribute("stroke")} ${p.getAttribute("opacity") ?? "1"}`))
    const before = await opacities()
    expect(before.every((o) => o.endsWith(" 1"))).toBe(true)
    const symbol = fig.locator(".chart.live g.role-legend-symbol path").first()
    const colour = await symbol.getAttribute("fill")
    await symbol.click()
    await expect.poll(async () => (await opacities()).filter((o) => !o.endsWith(" 1")).length).toBeGreaterThan(0)
    for (const o of await opacities()) expect(o).toBe(o.startsWith(`${colour} `) ? `${colour} 1` : `${o.split(" ")[0]} ${FADED}`)
    await symbol.click()
    await expect.poll(opacities).toEqual(before)
    // Zoom: a plain wheel leaves the axes alone; Ctrl + wheel over a panel zooms it.
    // The first panel's zoom (interactive.ts: zoom_1 on the training-step panel): its x and y intervals, empty until zoomed.
    const xLabels = () => page.evaluate(`JSON.stringify(document.querySelector("#fig-validation-ppl .chart").vegaView.signal("zoom_1"))`)
    const line = fig.locator(".chart.live g.mark-line path").first()
    const at = async () => {
      const b = (await line.boundingBox())!
      await page.mouse.move(b.x + b.width / 2, b.y + b.height / 2)
    }
    const start = await xLabels()
    expect(start).toBe("{}")
    await at()
    await page.mouse.wheel(0, -300)
    await page.waitForTimeout(300)
    expect(await xLabels()).toEqual(start)
    await at()
    await page.keyboard.down("Control")
    await page.mouse.wheel(0, -300)
    await page.keyboard.up("Control")
    await expect.poll(xLabels).not.toEqual(start)
    // The CSV link downloads exactly the file beside the page.
    const [download] = await Promise.all([page.waitForEvent("download"), fig.locator(".downloads a.csv").click()])
    expect(fs.readFileSync((await download.path())!, "utf8")).toBe(fs.readFileSync(csvFile, "utf8"))
    // A download ends its request as "failed" (the page does not navigate); nothing else may fail.
    expect(problems.errors.filter((e) => e !== `request failed: ${pathToFileURL(csvFile).href}`)).toEqual([])
    expect(problems.external).toEqual([])
    await page.close()
  })

  it("with scripts off every figure keeps its static SVG (the file beside the page), without live views or hints", async () => {
    const file = path.join(full.runDir, REPORT_PATH)
    const html = fs.readFileSync(file, "utf8")
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu"] })
    try {
      const page = await (await browser.newContext({ javaScriptEnabled: false })).newPage()
      await page.goto(pathToFileURL(file).href, { waitUntil: "load" })
      const figures = page.locator("section.fig")
      expect(await figures.count()).toBe(FIGURES)
      for (let i = 0; i < FIGURES; i++) {
        const f = figures.nth(i)
        const id = (await f.getAttribute("id"))!
        expect(await f.locator(":scope > figure > .chart > svg").count(), id).toBe(1)
        expect(await f.locator(".chart.live, p.hint, .downloads button.png").count(), id).toBe(0)
        expect(await f.locator("svg g.role-mark path").count(), id).toBeGreaterThan(3)
        expect(html, id).toContain(fs.readFileSync(path.join(full.runDir, "report/figures", `${id}.svg`), "utf8"))
      }
    } finally {
      await browser.close()
    }
  })

  it("a run missing tables still builds: figures left out with notes, no broken links", async () => {
    const file = path.join(partial.runDir, REPORT_PATH)
    const { page, problems } = await open(context!, file)
    expect(await page.locator("section.fig").count()).toBe(FIGURES)
    const drawn = await page.locator("section.fig:not(.missing)").evaluateAll((fs) => fs.map((f) => f.id))
    expect(drawn).toEqual(["fig-validation-ppl", "fig-downstream", "fig-task-accuracy", "fig-correlations"])
    const missing = page.locator("section.fig.missing")
    expect(await missing.count()).toBe(FIGURES - 4)
    for (let i = 0; i < FIGURES - 4; i++) {
      const f = missing.nth(i)
      expect(await f.locator("svg").count()).toBe(0)
      expect(await f.locator(".note").first().textContent()).toMatch(/^Left out: \S+\.parquet is missing \(written by the \w+ stage(, which runs only when the config has a \w+ section)?\)$/)
      expect(((await f.locator("p.caption").textContent()) ?? "").length).toBeGreaterThan(20)
    }
    // the run's output names each figure left out and why, one line each
    const leftOut = partialLog.join("").split("\n").filter((l) => l.startsWith("report: figure"))
    expect(leftOut).toHaveLength(FIGURES - 4)
    for (const l of leftOut) expect(l).toMatch(/^report: figure "\d+\. [^"]+" left out: \S+\.parquet is missing \(written by the \w+ stage/)
    expect(leftOut.some((l) => l.includes("which runs only when the config has a sequences section"))).toBe(true)
    expect(await page.locator("#checks").count()).toBe(0)
    for (const id of ["fig-validation-ppl", "fig-downstream", "fig-correlations"]) {
      expect(await page.locator(`#${id} svg g.role-axis`).count(), id).toBeGreaterThanOrEqual(2)
    }
    expect(await page.locator("#fig-validation-ppl svg g.role-mark path").count()).toBeGreaterThan(3)
    const links = await checkLinks(page, path.dirname(file))
    expect([...new Set(links)].sort()).toEqual(["../checkpoints.parquet", "../correlations.parquet", "../r2_differences.parquet", "../task_metrics.parquet"])
    expect(await duplicateIds(page)).toBe(0)
    await page.screenshot({ path: path.join(partial.runDir, "report", "screenshot.png"), fullPage: true })
    expect(problems).toEqual({ errors: [], external: [] })
    await page.close()
  })
})
