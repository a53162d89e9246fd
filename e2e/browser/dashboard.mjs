// Browser test of nadir-dashboard in headless Chromium (Debian's package),
// driven by playwright-core. e2e/tests/dashboard.rs starts the services, a
// real pipeline run and the dashboard, then runs this with:
//
//   DASHBOARD_URL   http://127.0.0.1:PORT
//   DASHBOARD_USER, DASHBOARD_PASSWORD   basic-auth credentials
//   EXPECT          JSON: run_id, rows, flagged, filter_host, filtered,
//                   findings (count), planted (finding kinds that must be
//                   among the first ten), hostile (strings that must show
//                   as text)
//   SCREENSHOTS     directory for one PNG per page
//   CHROMIUM        the browser (default /usr/bin/chromium)
//
// Exits non-zero, saying what failed, on the first broken expectation.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = process.env.DASHBOARD_URL;
const expect = JSON.parse(process.env.EXPECT);
const shots = process.env.SCREENSHOTS;
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const context = await browser.newContext({
  httpCredentials: { username: process.env.DASHBOARD_USER, password: process.env.DASHBOARD_PASSWORD },
  viewport: { width: 1440, height: 900 },
});
const page = await context.newPage();
const problems = [];
page.on("console", (m) => { if (m.type() === "error") problems.push(`console error on ${page.url()}: ${m.text()}`); });
page.on("pageerror", (e) => problems.push(`page error on ${page.url()}: ${e.message}`));
page.on("dialog", async (d) => { problems.push(`a dialog opened on ${page.url()}: ${d.message()}`); await d.dismiss(); });

const formatted = (n) => n.toLocaleString("en-US");

async function visit(path, shot) {
  const response = await page.goto(base + path, { waitUntil: "load" });
  assert.equal(response.status(), 200, `${path} answered ${response.status()}`);
  assert.equal(await page.locator("script").count(), 0, `${path} carries a script element`);
  if (shot) await page.screenshot({ path: join(shots, `${shot}.png`), fullPage: true });
  assert.deepEqual(problems, [], `while loading ${path}`);
}

const run = `/runs/${expect.run_id}`;
const step = (name) => console.log(`browser: ${name}`);

step("the dashboard opens on the findings queue");
await visit("/", "findings");
const queueRows = page.locator("table.findings tbody tr");
assert.equal(await page.locator("#shown").innerText(), String(expect.findings), "every finding of the run is open");
assert.equal(await queueRows.count(), expect.findings);
const firstTen = (await queueRows.allInnerTexts()).slice(0, 10);
for (const kind of expect.planted) {
  assert.ok(firstTen.some((r) => r.includes(kind)), `a ${kind} finding among the first ten rows:\n${firstTen.join("\n")}`);
}
for (const r of await page.locator("table.findings tbody td.why").allInnerTexts()) {
  assert.ok(r.trim().length > 20, `a finding explained in words: ${r}`);
}

step("a kind filter narrows the queue");
await page.selectOption('select[name="kind"]', "scan");
await Promise.all([page.waitForNavigation(), page.click('form.filters button[type="submit"]')]);
assert.deepEqual(problems, []);
const scans = await queueRows.allInnerTexts();
assert.ok(scans.length > 0 && scans.length < expect.findings, "only scans");
for (const r of scans) assert.match(r, /scan/);

step("a finding's page: evidence, timeline, hosts");
await visit("/", null);
const tunnel = page.locator("table.findings tbody tr", { hasText: "DNS tunnel" }).first();
await Promise.all([page.waitForNavigation(), tunnel.locator("a").first().click()]);
assert.deepEqual(problems, []);
await page.screenshot({ path: join(shots, "finding.png"), fullPage: true });
let findingText = await page.locator("main").innerText();
assert.match(findingText, /Evidence flows/);
assert.match(findingText, /Hosts involved/);
assert.ok(await page.locator("table.evidence tbody tr").count() > 0, "evidence flows listed");
assert.equal(await page.locator("svg.timeline").count(), 1, "a timeline");
await Promise.all([page.waitForNavigation(), page.locator("table.evidence tbody tr a").first().click()]);
assert.match(await page.locator("main").innerText(), /Scores/, "an evidence flow is one click away");

step("triage: the last finding is a false positive");
await visit("/", null);
const last = queueRows.last();
const lastText = await last.innerText();
await Promise.all([page.waitForNavigation(), last.locator("a").first().click()]);
const fpUrl = page.url();
const note = `benign, says the browser test ${Date.now()}`;
await page.selectOption('form.triage select[name="state"]', "false_positive");
await page.fill('form.triage textarea[name="note"]', note);
await Promise.all([page.waitForNavigation(), page.click('form.triage button[type="submit"]')]);
assert.equal(page.url(), fpUrl, "back on the finding");
const history = await page.locator("ul.verdicts").innerText();
assert.ok(history.includes(note), "the note is in the history");
assert.match(history, /false positive by/);
await visit("/", null);
assert.equal(await page.locator("#shown").innerText(), String(expect.findings - 1), "a closed finding leaves the open queue");

step("suppress like this: gone from the queue, counted by its rule");
const noisy = queueRows.last();
await Promise.all([page.waitForNavigation(), noisy.locator("a").first().click()]);
const suppressedUrl = page.url();
await page.fill('form.suppress input[name="reason"]', "the browser test's noisy pattern");
await Promise.all([page.waitForNavigation(), page.click('form.suppress button[type="submit"]')]);
assert.equal(page.url(), suppressedUrl, "back on the finding");
assert.match(await page.locator("main").innerText(), /hidden by rule \d+/);
await visit("/", null);
const open = Number(await page.locator("#shown").innerText());
assert.ok(open <= expect.findings - 2, `the suppressed finding is hidden (${open} shown)`);
await visit("/suppressions", "suppressions");
const rule = page.locator("table.rules tbody tr");
assert.equal(await rule.count(), 1, "one rule in force");
assert.ok(Number(await rule.locator("td.hides").innerText()) >= 1, "the rule hides a finding");
assert.ok(lastText.length > 0);

step("runs page");
await visit("/runs", "runs");
const row = page.locator("tr.run", { has: page.locator(`a[href="${run}"]`) });
assert.equal(await row.count(), 1, "the run is listed");
assert.match(await row.innerText(), new RegExp(formatted(expect.rows)), "the runs page shows the flows scored");
assert.match(await row.innerText(), /succeeded/);

step("run detail");
await visit(run, "run");
const text = await page.locator("main").innerText();
assert.match(text, new RegExp(`${formatted(expect.rows)} flows scored`));
for (const stage of ["ingest", "transform", "train", "eval"]) assert.match(text, new RegExp(stage));
assert.ok(await page.locator("table.detectors tbody tr").count() >= 2, "the detector comparison table");
assert.match(text, /Decision: (promote|keep|none)/);

step("anomalies");
await visit(`${run}/anomalies`, "anomalies");
assert.equal(await page.locator("#total").innerText(), formatted(expect.flagged), "flagged flows");
assert.equal(await page.locator("table.anomalies tbody tr").count(), Math.min(50, expect.flagged));

step("a filter narrows the table");
await page.fill('input[name="host"]', expect.filter_host);
await Promise.all([page.waitForNavigation(), page.click('form.filters button[type="submit"]')]);
assert.deepEqual(problems, []);
assert.equal(await page.locator("#total").innerText(), formatted(expect.filtered), `flows of ${expect.filter_host}`);
assert.ok(expect.filtered < expect.flagged, "the filter narrows");
for (const cell of await page.locator("table.anomalies tbody tr").allInnerTexts()) {
  assert.ok(cell.includes(expect.filter_host), `a filtered row without ${expect.filter_host}: ${cell}`);
}
await page.screenshot({ path: join(shots, "anomalies-filtered.png"), fullPage: true });

step("flow detail and feedback");
await page.locator("table.anomalies tbody tr a").first().click();
await page.waitForLoadState("load");
assert.deepEqual(problems, []);
assert.match(await page.locator("main").innerText(), /Why it was flagged/);
const flowUrl = page.url();
const comment = `checked by the browser test ${Date.now()}`;
await page.check('input[value="true_positive"]');
await page.fill('textarea[name="comment"]', comment);
await Promise.all([page.waitForNavigation(), page.click('form.feedback button[type="submit"]')]);
assert.equal(page.url(), flowUrl, "back on the flow after saving");
await page.reload();
assert.deepEqual(problems, []);
const verdicts = await page.locator("ul.verdicts").innerText();
assert.ok(verdicts.includes(comment), "the comment survives a reload");
assert.match(verdicts, /true positive by/);
await page.screenshot({ path: join(shots, "flow.png"), fullPage: true });

step("scores, hosts, models");
await visit(`${run}/scores`, "scores");
assert.ok(await page.locator("svg.chart line.threshold").count() >= 2, "thresholds marked");
await visit(`${run}/hosts`, "hosts");
assert.ok(await page.locator("table.hosts tbody tr").count() > 0, "host timelines");
await visit("/models", "models");
assert.ok(await page.locator("table.registry tbody tr").count() >= 2, "the registry lists the run's models");

step("untrusted text stays text");
for (const [path, payload] of expect.hostile) {
  await visit(path, null);
  const shown = await page.locator("main").innerText();
  assert.ok(shown.includes(payload), `${path} shows ${payload} as text`);
  assert.equal(await page.locator("main img, main svg[onload], main b[onmouseover]").count(), 0,
    `${path}: a payload became an element`);
}
await page.screenshot({ path: join(shots, "hostile.png"), fullPage: true });
assert.deepEqual(problems, []);

await browser.close();
console.log("browser: every page passed");
