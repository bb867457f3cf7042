// Browser tests of the web app against a running stack (issues 6 and 8): a real Chromium
// (Debian's, headless, driven by playwright-core; nothing is downloaded) goes through the app as
// a user would, saves a screenshot per step and runs axe-core on every page.
//
// Run by tests/tests/web_app.rs against the local cloud (`cargo test -p e2e --test web_app`);
// by hand against any stage:
//
//   WEB_URL=http://127.0.0.1:PORT/v1/ OUT_DIR=/tmp/web SAMPLE_IMAGE=photo.png \
//     E2E_EMAIL=approver@example.com E2E_PASSWORD=... node e2e/browser.mjs
//
// It signs in first (the user must be in the `approvers` group and have a permanent password:
// a temporary one would ask for a new password, which this script does not choose), checks that
// every API call carries the raw ID token, and signs out last, checking that the actions and the
// data are gone. It expects a model to be staged already (training started by a data set), and
// it changes the stack: it starts a training run, accepts the staged model (recorded as
// E2E_EMAIL, which the history must show) and subscribes an email address.
//
// Environment:
//   WEB_URL        the app, ending in `/` (`deployer up` prints it as web_url)
//   OUT_DIR        screenshots `NN-name.png` and summary.json (created)
//   SAMPLE_IMAGE   a JPEG or PNG to classify
//   E2E_EMAIL      the email of a user of the stack's user pool, in the approvers group
//   E2E_PASSWORD   that user's (permanent) password
//   CHROMIUM       the browser (default /usr/bin/chromium)
//   EMAIL          the address to subscribe (default: a unique one at example.com)
//   TRAINING_TIMEOUT_S, DEPLOY_TIMEOUT_S   default 120 each
//
// Exit 0 when every step passed, axe-core found no serious or critical violation on any page
// and the page threw no error; 1 otherwise (the reasons are printed last and in summary.json);
// 2 for bad input.
//
// Not part of `npm test` (Vitest runs test/*.test.ts(x) only).

import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';

// ------------------------------------------------------------------ inputs

function usage(message) {
  console.error(`browser.mjs: ${message}`);
  console.error(
    'usage: WEB_URL=http://127.0.0.1:PORT/<stage>/ OUT_DIR=DIR SAMPLE_IMAGE=FILE.png|jpg E2E_EMAIL=EMAIL E2E_PASSWORD=PASSWORD [CHROMIUM=/usr/bin/chromium] node e2e/browser.mjs',
  );
  process.exit(2);
}

const WEB_URL = process.env.WEB_URL ?? '';
const OUT_DIR = resolve(process.env.OUT_DIR ?? '');
const SAMPLE_IMAGE = process.env.SAMPLE_IMAGE ?? '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const E2E_EMAIL = (process.env.E2E_EMAIL ?? '').trim();
const E2E_PASSWORD = process.env.E2E_PASSWORD ?? '';
const EMAIL = process.env.EMAIL || `browser-${Date.now()}-${process.pid}@example.com`;
const TRAINING_TIMEOUT_MS = Number(process.env.TRAINING_TIMEOUT_S || 120) * 1000;
const DEPLOY_TIMEOUT_MS = Number(process.env.DEPLOY_TIMEOUT_S || 120) * 1000;
/** The whole run, so a hung browser cannot hang the caller. */
const OVERALL_TIMEOUT_MS = 15 * 60 * 1000;

if (!/^https?:\/\/[^/]+\/(.*\/)?$/.test(WEB_URL)) {
  usage(`WEB_URL must be an http(s) URL ending in "/" (the app resolves api/ and assets/ against it), got "${WEB_URL}"`);
}
if (!process.env.OUT_DIR) usage('OUT_DIR is not set');
if (!SAMPLE_IMAGE || !existsSync(SAMPLE_IMAGE)) usage(`SAMPLE_IMAGE "${SAMPLE_IMAGE}" is not a file`);
if (!/\.(png|jpe?g)$/i.test(SAMPLE_IMAGE)) usage(`SAMPLE_IMAGE must be a .png, .jpg or .jpeg file, got "${SAMPLE_IMAGE}"`);
if (!E2E_EMAIL || !E2E_EMAIL.includes('@')) usage(`E2E_EMAIL must be the email of an approver of the stack's user pool, got "${E2E_EMAIL}"`);
if (!E2E_PASSWORD) usage('E2E_PASSWORD is not set (the password of E2E_EMAIL)');
if (!existsSync(CHROMIUM)) {
  usage(`no browser at ${CHROMIUM}: install Debian's chromium (\`./dev setup\` does) or set CHROMIUM`);
}
mkdirSync(OUT_DIR, { recursive: true });

const ORIGIN = new URL(WEB_URL).origin;
const apiUrl = (path) => new URL(`api/${path}`, WEB_URL).toString();
const API_PREFIX = apiUrl('');
const CONFIG_URL = new URL('config.json', WEB_URL).toString();
/** Origins the page may call: its own, and the user pool's endpoint (from config.json). */
const allowedOrigins = new Set([ORIGIN]);
/** The newest ID token the page sent to the API (for this script's own API reads). */
let lastIdToken = null;

/** The metric series colours of src/components/MetricChart.tsx (SERIES_STYLE). */
const SERIES_COLOURS = {
  accuracy: [0x0b, 0x5f, 0xa5],
  precision: [0xb3, 0x47, 0x00],
  recall: [0x00, 0x79, 0x5a],
  f1: [0xa3, 0x34, 0x7a],
  auc_roc: [0x5c, 0x52, 0x00],
};

// ------------------------------------------------------------------ the record

const started = Date.now();
const summary = {
  web_url: WEB_URL,
  chromium: CHROMIUM,
  browser_version: null,
  sample_image: SAMPLE_IMAGE,
  user: E2E_EMAIL,
  auth_endpoint: null,
  email: EMAIL,
  ok: false,
  seconds: 0,
  steps: [],
  axe: {},
  layout_360: null,
  chart: null,
  training: null,
  accepted_model_id: null,
  prediction: null,
  subscription: null,
  signed_out: null,
  api_requests: { with_token: 0, health_without_token: 0, without_token: [], bearer_prefixed: [] },
  page_errors: [],
  csp_violations: [],
  console_errors: [],
  foreign_requests: [],
  failures: [],
};

function writeSummary() {
  summary.seconds = Math.round((Date.now() - started) / 100) / 10;
  writeFileSync(join(OUT_DIR, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
}

const log = (...args) => console.log(...args);

// ------------------------------------------------------------------ helpers

class StepError extends Error {}

/** Fails the current step with `message`. */
function fail(message) {
  throw new StepError(message);
}

function expect(cond, message) {
  if (!cond) fail(message);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `probe` every `every` ms until it answers `{ ok: true, value }`; fails with `what`, the
 * timeout and the last observation (`{ ok: false, seen }`). `probe` may call fail() to stop early.
 */
async function waitFor(what, timeoutMs, probe, every = 500) {
  const t0 = Date.now();
  let seen = 'nothing yet';
  for (;;) {
    const r = await probe();
    if (r.ok) return r.value;
    seen = r.seen ?? seen;
    if (Date.now() - t0 >= timeoutMs) {
      fail(`timed out after ${Math.round(timeoutMs / 1000)} s waiting until ${what}; last seen: ${seen}`);
    }
    await sleep(every);
  }
}

let page;
let stepNo = 0;

/**
 * One step: runs `fn`, then saves `NN-name.png` (also when it failed) and records the outcome
 * and time. After a failed step the later ones are recorded as skipped.
 */
async function step(name, fn) {
  stepNo += 1;
  const file = `${String(stepNo).padStart(2, '0')}-${name}.png`;
  const rec = { n: stepNo, name, ok: false, seconds: 0, screenshot: join(OUT_DIR, file), detail: null, error: null };
  summary.steps.push(rec);
  if (summary.failures.some((f) => f.kind === 'step')) {
    rec.skipped = true;
    rec.screenshot = null;
    rec.error = 'skipped: an earlier step failed';
    log(`step ${file.slice(0, 2)} ${name}: skipped`);
    return undefined;
  }
  log(`--- step ${file.slice(0, 2)} ${name}`);
  const t0 = Date.now();
  let value;
  try {
    value = await fn(rec);
    rec.ok = true;
  } catch (e) {
    rec.error = e instanceof StepError ? e.message : `${e?.name ?? 'Error'}: ${e?.message ?? e}`;
    summary.failures.push({ kind: 'step', step: name, message: rec.error });
  }
  rec.seconds = Math.round((Date.now() - t0) / 100) / 10;
  try {
    await page.screenshot({ path: rec.screenshot, fullPage: true });
  } catch (e) {
    rec.screenshot = null;
    rec.screenshot_error = String(e?.message ?? e);
  }
  log(`step ${file.slice(0, 2)} ${name}: ${rec.ok ? 'ok' : 'FAILED'} in ${rec.seconds} s${rec.screenshot ? ` (${rec.screenshot})` : ''}`);
  if (rec.detail) log(`  ${typeof rec.detail === 'string' ? rec.detail : JSON.stringify(rec.detail)}`);
  if (!rec.ok) log(`  ${rec.error}`);
  writeSummary();
  return value;
}

/** Goes to a page through its nav link, as a user would, and waits for it to be shown. */
async function open(pageId) {
  await page.getByTestId(`nav-${pageId}`).click();
  await page.locator(`main[data-page="${pageId}"]`).waitFor({ timeout: 10_000 });
  await expectAttr(page.getByTestId(`nav-${pageId}`), 'aria-current', 'page');
}

async function expectAttr(locator, name, want) {
  const got = await locator.getAttribute(name);
  expect(got === want, `expected ${name}="${want}" on ${locator}, got ${JSON.stringify(got)}`);
}

/** The text of a test hook, or null when it is not in the page. */
async function textOf(testid) {
  const l = page.getByTestId(testid);
  if ((await l.count()) === 0) return null;
  return (await l.first().innerText()).trim();
}

/** The page's own error and load-error messages (role=alert), for failure messages. */
async function alerts() {
  const texts = await page.locator('[role="alert"]').allInnerTexts();
  return texts.map((t) => t.trim()).filter(Boolean);
}

/**
 * GET api/<path> from the page's origin with the ID token the page last sent (or none), as JSON
 * (or `{ status, text }` on a non-JSON body).
 */
async function apiGet(path, { token = lastIdToken } = {}) {
  const headers = token ? { authorization: token } : {};
  const r = await page.request.get(apiUrl(path), { timeout: 30_000, headers });
  const text = await r.text();
  try {
    return { status: r.status(), json: JSON.parse(text) };
  } catch {
    return { status: r.status(), text: text.slice(0, 300) };
  }
}

// ------------------------------------------------------------------ axe-core

/** Runs axe-core on the page as it is now; serious and critical violations fail the run. */
async function axe(key) {
  const t0 = Date.now();
  let results;
  try {
    results = await new AxeBuilder({ page }).analyze();
  } catch (e) {
    summary.axe[key] = { error: String(e?.message ?? e) };
    summary.failures.push({ kind: 'axe', page: key, message: `axe-core could not run on ${key}: ${e?.message ?? e}` });
    log(`  axe ${key}: could not run: ${e?.message ?? e}`);
    return;
  }
  const violations = results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    help_url: v.helpUrl,
    nodes: v.nodes.length,
    targets: v.nodes.slice(0, 5).map((n) => n.target.join(' ')),
    summary: v.nodes[0]?.failureSummary?.split('\n').slice(0, 3).join(' ') ?? '',
  }));
  const blocking = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  summary.axe[key] = {
    url: page.url(),
    viewport: page.viewportSize(),
    seconds: Math.round((Date.now() - t0) / 100) / 10,
    axe_version: results.testEngine?.version,
    passes: results.passes.length,
    incomplete: results.incomplete.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length })),
    violations,
  };
  log(
    `  axe ${key}: ${violations.length} violation(s)` +
      (violations.length ? `: ${violations.map((v) => `${v.id} (${v.impact}, ${v.nodes} node(s))`).join(', ')}` : '') +
      `; ${results.passes.length} rules passed, ${results.incomplete.length} need review`,
  );
  for (const v of blocking) {
    summary.failures.push({
      kind: 'axe',
      page: key,
      message: `axe-core on ${key}: ${v.impact} violation ${v.id} — ${v.help} (${v.nodes} node(s): ${v.targets.join(', ')}) ${v.summary}`,
    });
  }
}

// ------------------------------------------------------------------ the steps

async function main() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // As root (CI, containers) Chromium refuses to start sandboxed.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run', '--no-default-browser-check'],
    timeout: 60_000,
  });
  summary.browser_version = browser.version();
  log(`browser: ${CHROMIUM} (Chromium ${browser.version()}); app: ${WEB_URL}; output: ${OUT_DIR}`);
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    deviceScaleFactor: 1,
    locale: 'en-GB',
    timezoneId: 'UTC',
    reducedMotion: 'reduce',
  });
  context.setDefaultTimeout(15_000);

  // The user pool the app signs in against: its endpoint is the one other origin it may call.
  const cfgResp = await context.request.get(CONFIG_URL, { timeout: 30_000 });
  const cfgText = await cfgResp.text();
  let cfg = null;
  try {
    cfg = JSON.parse(cfgText);
  } catch {
    // reported below
  }
  const endpoint = cfg?.auth?.endpoint;
  if (cfgResp.status() !== 200 || typeof endpoint !== 'string') {
    throw new Error(
      `GET ${CONFIG_URL}: expected 200 with {"auth": {"endpoint": ...}} (the stack's user pool), got ${cfgResp.status()}: ${cfgText.slice(0, 300)}`,
    );
  }
  summary.auth_endpoint = endpoint;
  allowedOrigins.add(new URL(endpoint).origin);

  page = await context.newPage();

  page.on('pageerror', (e) => {
    summary.page_errors.push(String(e?.stack ?? e));
    log(`  page error: ${e?.message ?? e}`);
  });
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    const text = m.text();
    if (/Content[- ]Security[- ]Policy|Refused to (load|apply|execute|connect|evaluate)/i.test(text)) {
      summary.csp_violations.push(text);
      log(`  CSP violation: ${text}`);
    } else if (m.type() === 'error') {
      summary.console_errors.push(text);
    }
  });
  page.on('request', async (r) => {
    const u = r.url();
    if (/^(data|blob|about|chrome-extension):/.test(u)) return;
    try {
      if (!allowedOrigins.has(new URL(u).origin)) summary.foreign_requests.push(u);
    } catch {
      summary.foreign_requests.push(u);
    }
    // Every API call but health carries the raw ID token (no "Bearer ").
    if (!u.startsWith(API_PREFIX)) return;
    const path = u.slice(API_PREFIX.length).split(/[?#]/)[0];
    const auth = (await r.allHeaders().catch(() => ({}))).authorization;
    if (path === 'health') {
      if (!auth) summary.api_requests.health_without_token += 1;
    } else if (!auth) {
      summary.api_requests.without_token.push(`${r.method()} ${u}`);
    } else if (/^bearer /i.test(auth)) {
      summary.api_requests.bearer_prefixed.push(`${r.method()} ${u}`);
    } else {
      summary.api_requests.with_token += 1;
      lastIdToken = auth;
    }
  });

  // 1. Sign in (the sign-in form is all a signed-out visitor sees).
  await step('sign-in', async (rec) => {
    const resp = await page.goto(WEB_URL, { waitUntil: 'load', timeout: 30_000 });
    expect(resp, `GET ${WEB_URL} got no response`);
    const type = resp.headers()['content-type'] ?? '';
    expect(
      resp.status() === 200 && type.includes('text/html'),
      `GET ${WEB_URL}: expected 200 text/html (the app's index.html), got ${resp.status()} ${type}: ${(await resp.text()).slice(0, 200)}`,
    );
    await page.getByTestId('signin-form').waitFor({ timeout: 15_000 }).catch(async () =>
      fail(
        `the app shows no sign-in form 15 s after loading ${WEB_URL}: ${
          (await textOf('config-error')) ?? `page errors ${JSON.stringify(summary.page_errors)}`
        }`,
      ),
    );
    for (const hidden of ['nav-dashboard', 'models-table', 'user']) {
      expect((await page.getByTestId(hidden).count()) === 0, `signed out, the page still shows ${hidden}`);
    }
    await axe('sign-in');
    await page.getByTestId('signin-email').fill(E2E_EMAIL);
    await page.getByTestId('signin-password').fill(E2E_PASSWORD);
    await page.getByTestId('signin-submit').click();
    const who = await waitFor(`${E2E_EMAIL} is signed in`, 30_000, async () => {
      const err = await textOf('signin-error');
      if (err) fail(`signing in as ${E2E_EMAIL} failed: ${err}`);
      if ((await page.getByTestId('new-password-form').count()) > 0) {
        fail(`${E2E_EMAIL} has a temporary password (the app asks for a new one): give it a permanent password first`);
      }
      const email = await textOf('user-email');
      return email ? { ok: true, value: email } : { ok: false, seen: 'no user in the header yet' };
    }, 250);
    expect(who === E2E_EMAIL, `the header shows "${who}" signed in, expected ${E2E_EMAIL}`);
    const role = await textOf('user-role');
    expect(role === 'approver', `the header shows ${E2E_EMAIL} as "${role}": the browser test needs a user in the approvers group`);
    expect((await page.getByTestId('sign-out').count()) === 1, 'no sign-out button in the header');
    rec.detail = { user: who, role };
  });

  // 2. The dashboard.
  await step('dashboard', async (rec) => {
    await page.locator('main[data-page="dashboard"]').waitFor({ timeout: 15_000 }).catch(() =>
      fail(`the app did not render: no <main data-page="dashboard"> 15 s after signing in (page errors: ${JSON.stringify(summary.page_errors)})`),
    );
    await page.getByTestId('models-table').waitFor({ timeout: 20_000 }).catch(async () =>
      fail(`the dashboard shows no models table after 20 s; alerts: ${JSON.stringify(await alerts())}`),
    );
    expect((await page.title()).includes('Dashboard'), `expected the title to name the Dashboard, got "${await page.title()}"`);
    const rows = await page.locator('[data-testid="models-table"] tbody tr').count();
    expect(rows >= 1, `expected at least one model in the table (a staged one), got ${rows}`);
    const staged = await textOf('staged-summary');
    expect(staged, 'expected the "staged, waits for a decision" notice: a model should be staged before the browser test');
    rec.detail = { models: rows, staged: staged, serving: await textOf('serving-summary') };
    await axe('dashboard');
  });

  // 3-4. Training: start a run and see it finish.
  await step('training-started', async (rec) => {
    await open('training');
    const status = page.getByTestId('training-status');
    await status.waitFor({ timeout: 20_000 });
    const button = page.getByTestId('start-training');
    // A run still in progress (the data set's own) disables the button until it finishes.
    await waitFor('the start button is enabled (no run in progress)', TRAINING_TIMEOUT_MS, async () => {
      const disabled = await button.isDisabled();
      return disabled ? { ok: false, seen: `disabled; status ${await status.getAttribute('data-status')}` } : { ok: true };
    });
    const before = await status.getAttribute('data-job');
    rec.previous_job = before;
    await button.click();
    const result = page.getByTestId('start-result');
    const said = await waitFor('the start is answered', 30_000, async () => {
      if ((await result.count()) === 0) return { ok: false, seen: 'no start-result' };
      const tone = await result.getAttribute('data-tone');
      const text = (await result.innerText()).trim();
      if (tone === 'error') fail(`starting training failed: ${text}`);
      return tone === 'success' ? { ok: true, value: text } : { ok: false, seen: text };
    });
    expect(/Training started: job \S+/.test(said), `expected "Training started: job …", got "${said}"`);
    const job = await waitFor('the new run is the newest on the page', 20_000, async () => {
      const j = await status.getAttribute('data-job');
      return j && j !== before ? { ok: true, value: j } : { ok: false, seen: `data-job ${j}` };
    });
    expect(said.includes(job), `the start message names another job than the newest run ${job}: "${said}"`);
    const st = await status.getAttribute('data-status');
    if (st === 'in_progress') {
      const elapsed = await textOf('training-elapsed');
      expect(elapsed, 'a run in progress shows no elapsed time (training-elapsed)');
      rec.elapsed_shown = elapsed;
    }
    rec.detail = { job, status: st, message: said };
    summary.training = { job, started_message: said };
  });

  await step('training-completed', async (rec) => {
    const status = page.getByTestId('training-status');
    const job = summary.training.job;
    const t0 = Date.now();
    const model = await waitFor(`training run ${job} is completed`, TRAINING_TIMEOUT_MS, async () => {
      const j = await status.getAttribute('data-job');
      const st = await status.getAttribute('data-status');
      const line = (await status.innerText()).trim().replace(/\s+/g, ' ');
      if (j !== job) return { ok: false, seen: `newest run ${j} (${st}), not ${job}` };
      if (st === 'failed') fail(`training run ${job} failed: ${line}`);
      return st === 'completed' ? { ok: true, value: await status.getAttribute('data-model-id') } : { ok: false, seen: `${st}: ${line}` };
    }, 1000);
    const waited = Math.round((Date.now() - t0) / 100) / 10;
    expect(model, `the completed run ${job} names no model (data-model-id)`);
    const row = page.locator(`[data-testid="training-runs"] tr[data-job="${job}"]`);
    expect((await row.getAttribute('data-status')) === 'completed', `the runs table does not show ${job} completed`);
    summary.training.model_id = model;
    summary.training.seconds_to_complete = waited;
    summary.training.status_line = (await status.innerText()).trim().replace(/\s+/g, ' ');
    rec.detail = { job, model_id: model, waited_s: waited, line: summary.training.status_line };
    await axe('training');
  });

  // 5. The dashboard's metric chart is drawn.
  await step('dashboard-chart', async (rec) => {
    await open('dashboard');
    const chart = page.getByTestId('metric-chart');
    await chart.waitFor({ timeout: 10_000 });
    const model = summary.training.model_id;
    await page.locator(`[data-testid="models-table"] tr[data-model-id="${model}"]`).waitFor({ timeout: 20_000 }).catch(() =>
      fail(`the dashboard's table has no row for the model just trained (${model})`),
    );
    const points = await waitFor('the chart has points', 20_000, async () => {
      const p = Number(await chart.getAttribute('data-points'));
      return p >= 1 ? { ok: true, value: p } : { ok: false, seen: `data-points ${p}` };
    });
    const series = Number(await chart.getAttribute('data-series'));
    expect(series === 5, `expected all 5 metrics shown by default (data-series), got ${series}`);
    await chart.scrollIntoViewIfNeeded();
    const pixels = await chartPixels(chart);
    rec.detail = { points, series, ...pixels };
    summary.chart = rec.detail;
    expect(pixels.width > 0 && pixels.height > 0, `the chart canvas has no size (${pixels.width}×${pixels.height})`);
    expect(pixels.painted > 0, 'the chart canvas is blank: no pixel is painted');
    const inPlot = Object.entries(pixels.series_in_plot).filter(([, n]) => n >= 5);
    expect(
      inPlot.length >= 1 && pixels.series_pixels_in_plot >= 20,
      `the chart draws no data: ${pixels.series_pixels_in_plot} pixels in the series colours in the plot area (${JSON.stringify(pixels.series_in_plot)})`,
    );
    // A toggle removes its series from the chart, and brings it back.
    const toggle = page.getByTestId('toggle-accuracy');
    await toggle.uncheck();
    await waitFor('the accuracy series is hidden', 5_000, async () => {
      const s = Number(await chart.getAttribute('data-series'));
      return s === 4 ? { ok: true } : { ok: false, seen: `data-series ${s}` };
    });
    // The chart is redrawn in an effect after the render that changed data-series.
    const limit = Math.max(5, pixels.series_in_plot.accuracy / 10);
    const without = await waitFor('the accuracy line is no longer drawn', 5_000, async () => {
      const px = await chartPixels(chart);
      return px.series_in_plot.accuracy < limit
        ? { ok: true, value: px }
        : { ok: false, seen: `${px.series_in_plot.accuracy} pixels in its colour (${pixels.series_in_plot.accuracy} before)` };
    }, 100);
    rec.detail.accuracy_pixels_when_hidden = without.series_in_plot.accuracy;
    await toggle.check();
    await waitFor('the accuracy series is back', 5_000, async () => {
      const s = Number(await chart.getAttribute('data-series'));
      return s === 5 ? { ok: true } : { ok: false, seen: `data-series ${s}` };
    });
  });

  // 6-8. Review: accept the staged model (as the signed-in user) and see it deployed.
  await step('review', async (rec) => {
    await open('review');
    const comparison = page.getByTestId('comparison');
    await comparison.waitFor({ timeout: 20_000 }).catch(async () =>
      fail(`the review page shows no staged model: ${(await textOf('no-staged')) ?? JSON.stringify(await alerts())}`),
    );
    const staged = await comparison.getAttribute('data-model-id');
    expect(
      staged === summary.training.model_id,
      `expected the newest staged model to be the one just trained (${summary.training.model_id}), the review shows ${staged}`,
    );
    expect((await textOf('staged-id')) === staged, 'staged-id does not show the staged model');
    const rows = await page.locator('[data-testid="metric-deltas"] tr[data-metric]').count();
    expect(rows >= 5, `expected a row per metric in the comparison, got ${rows}`);
    // No name to type: the decision is recorded as the signed-in user, whom the form names.
    expect((await page.getByTestId('decision-name').count()) === 0, 'the review still asks for a name (decision-name)');
    const actor = await textOf('decision-actor');
    expect(actor === E2E_EMAIL, `the decision form should name the signed-in ${E2E_EMAIL} as the actor, shows "${actor}"`);
    await page.getByTestId('decision-reason').fill('browser test: accept the model trained from the Training page');
    const accept = page.getByTestId('accept');
    await waitFor('the accept button is enabled', 30_000, async () =>
      (await accept.isEnabled()) ? { ok: true } : { ok: false, seen: `disabled; ${(await textOf('deployment-in-progress')) ?? ''}` },
    );
    rec.detail = { staged, metric_rows: rows, serving: await textOf('serving-id'), actor };
    await axe('review');
  });

  await step('review-accepted', async (rec) => {
    const staged = summary.training.model_id;
    await page.getByTestId('accept').click();
    const text = await waitFor('the accept is answered', 30_000, async () => {
      const r = page.getByTestId('review-result');
      if ((await r.count()) === 0) return { ok: false, seen: 'no review-result' };
      const tone = await r.getAttribute('data-tone');
      const t = (await r.innerText()).trim();
      if (tone === 'error') fail(`accepting ${staged} failed: ${t}`);
      return tone === 'success' ? { ok: true, value: t } : { ok: false, seen: t };
    }, 250);
    expect(text.includes(`Model ${staged} accepted`) || text.includes(`Model ${staged} is deployed`), `unexpected accept message: "${text}"`);
    summary.accepted_model_id = staged;
    rec.detail = { message: text };
  });

  await step('review-deployed', async (rec) => {
    const staged = summary.accepted_model_id;
    const t0 = Date.now();
    const text = await waitFor(`the review page says ${staged} is deployed and serving`, DEPLOY_TIMEOUT_MS, async () => {
      const r = page.getByTestId('review-result');
      const t = (await r.count()) ? (await r.innerText()).trim() : '';
      if ((await r.count()) && (await r.getAttribute('data-tone')) === 'error') fail(`the deployment of ${staged} failed: ${t}`);
      return t.includes(`Model ${staged} is deployed and serving`) ? { ok: true, value: t } : { ok: false, seen: t || 'no message' };
    }, 1000);
    const ep = await waitFor(`GET api/endpoint says InService serving ${staged}`, 30_000, async () => {
      const r = await apiGet('endpoint');
      const j = r.json ?? {};
      return r.status === 200 && j.status === 'InService' && j.serving_model_id === staged
        ? { ok: true, value: j }
        : { ok: false, seen: `${r.status} ${JSON.stringify(r.json ?? r.text)}` };
    });
    rec.detail = { message: text, endpoint: ep.name, waited_s: Math.round((Date.now() - t0) / 100) / 10 };
  });

  // 9. Predict an image.
  await step('predict', async (rec) => {
    await open('predict');
    const model = summary.accepted_model_id;
    await page.getByTestId('file-input').setInputFiles(SAMPLE_IMAGE);
    const label = await waitFor('a prediction is shown', 60_000, async () => {
      const err = await textOf('predict-error');
      if (err) fail(`predicting ${basename(SAMPLE_IMAGE)} failed: ${err}`);
      const l = await textOf('predict-label');
      return l ? { ok: true, value: l } : { ok: false, seen: (await textOf('predict-status')) ?? 'nothing' };
    }, 250);
    expect(label === 'Organic' || label === 'Recyclable', `expected the label Organic or Recyclable, got "${label}"`);
    const confidence = await textOf('predict-confidence');
    const modelId = await textOf('predict-model-id');
    expect(modelId === model, `expected the answer from the accepted model ${model}, got "${modelId}"`);
    expect(/\d/.test(confidence ?? ''), `expected a confidence, got "${confidence}"`);
    expect((await page.getByTestId('preview').count()) === 1, 'no preview of the chosen image');
    const previewOk = await page.getByTestId('preview').evaluate((img) => img.complete && img.naturalWidth > 0);
    expect(previewOk, 'the preview image did not load (a blob: URL the CSP or the page refused?)');
    summary.prediction = { label, confidence, model_id: modelId };
    rec.detail = summary.prediction;
    await axe('predict');
  });

  // 10. History: the accept, by the signed-in user.
  await step('history', async (rec) => {
    await open('history');
    const model = summary.accepted_model_id;
    const item = page.locator(`[data-testid="timeline"] li[data-model-id="${model}"][data-action="accept"]`);
    await item.first().waitFor({ timeout: 20_000 }).catch(async () =>
      fail(`the timeline shows no accept of ${model}: ${((await textOf('timeline')) ?? JSON.stringify(await alerts())).slice(0, 400)}`),
    );
    const text = (await item.first().innerText()).replace(/\s+/g, ' ').trim();
    // The actor comes from the ID token: the signed-in user's email.
    const actor = (await item.first().locator('.event-what strong').first().innerText()).trim();
    expect(actor === E2E_EMAIL, `the accept of ${model} in the timeline names "${actor}" as the actor, expected the signed-in ${E2E_EMAIL}: "${text}"`);
    expect(text.includes('browser test: accept'), `the accept of ${model} in the timeline does not show the reason: "${text}"`);
    rec.detail = { event: text, actor };
    await axe('history');
  });

  // 11-12. Notifications: a refused address, then a subscription.
  await step('notifications-invalid', async (rec) => {
    await open('notifications');
    const input = page.getByTestId('email-input');
    await input.fill('not-an-email');
    await page.getByTestId('subscribe').click();
    const err = await waitFor('a validation message is shown', 5_000, async () => {
      const t = await textOf('email-error');
      return t ? { ok: true, value: t } : { ok: false, seen: (await textOf('subscribe-result')) ?? 'nothing' };
    });
    await expectAttr(input, 'aria-invalid', 'true');
    await expectAttr(input, 'aria-describedby', 'email-error');
    expect((await textOf('subscribe-result')) === null, 'an invalid address was sent to the API anyway (subscribe-result shown)');
    rec.detail = { message: err };
    await axe('notifications-invalid');
  });

  await step('notifications-subscribed', async (rec) => {
    const input = page.getByTestId('email-input');
    await input.fill(EMAIL);
    expect((await textOf('email-error')) === null, 'the validation message stays after the address is corrected');
    await page.getByTestId('subscribe').click();
    const text = await waitFor('the subscription is answered', 30_000, async () => {
      const r = page.getByTestId('subscribe-result');
      if ((await r.count()) === 0) return { ok: false, seen: 'no subscribe-result' };
      const tone = await r.getAttribute('data-tone');
      const t = (await r.innerText()).trim();
      if (tone === 'error') fail(`subscribing ${EMAIL} failed: ${t}`);
      return tone === 'success' ? { ok: true, value: t } : { ok: false, seen: t };
    }, 250);
    expect(
      text.includes(EMAIL) && /confirmation email was sent/i.test(text),
      `expected the confirmation message naming ${EMAIL}, got "${text}"`,
    );
    summary.subscription = { email: EMAIL, message: text };
    rec.detail = summary.subscription;
    await axe('notifications');
  });

  // 13. A phone-width screen.
  await step('dashboard-360px', async (rec) => {
    await page.setViewportSize({ width: 360, height: 780 });
    await open('dashboard');
    await page.getByTestId('models-table').waitFor({ timeout: 20_000 });
    await page.getByTestId('metric-chart').waitFor();
    await sleep(300); // the chart resizes on a ResizeObserver callback
    const m = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      clientWidth: document.documentElement.clientWidth,
      bodyScrollWidth: document.body.scrollWidth,
      innerWidth: window.innerWidth,
      // Elements sticking out to the right of the viewport (outside scrolling regions).
      overflowing: [...document.querySelectorAll('body *')]
        .filter((el) => {
          const r = el.getBoundingClientRect();
          if (r.width === 0 || r.right <= document.documentElement.clientWidth + 1) return false;
          for (let p = el.parentElement; p; p = p.parentElement) {
            const o = getComputedStyle(p).overflowX;
            if (o === 'auto' || o === 'scroll' || o === 'hidden') return false;
          }
          return true;
        })
        .slice(0, 5)
        .map((el) => `${el.tagName.toLowerCase()}${el.className ? `.${String(el.className).split(' ').join('.')}` : ''} (right ${Math.round(el.getBoundingClientRect().right)})`),
    }));
    const scrolled = await page.evaluate(() => {
      window.scrollTo(100, window.scrollY);
      const x = window.scrollX;
      window.scrollTo(0, window.scrollY);
      return x;
    });
    summary.layout_360 = { ...m, scrollX_after_scrolling_right: scrolled };
    rec.detail = summary.layout_360;
    expect(
      m.scrollWidth <= m.clientWidth && scrolled === 0,
      `at 360 px the dashboard scrolls sideways: document ${m.scrollWidth} px wide in a ${m.clientWidth} px viewport; sticking out: ${m.overflowing.join(', ') || 'none found'}`,
    );
    await axe('dashboard-360px');
  });

  // 14. Sign out: the sign-in form, and neither the actions nor the data on any page.
  await step('signed-out', async (rec) => {
    await page.setViewportSize({ width: 1280, height: 900 });
    await open('training');
    await page.getByTestId('start-training').waitFor({ timeout: 20_000 });
    const token = lastIdToken;
    await page.getByTestId('sign-out').click();
    await page.getByTestId('signin-form').waitFor({ timeout: 15_000 }).catch(async () =>
      fail(`no sign-in form 15 s after "Sign out"; the header shows ${(await textOf('user-email')) ?? 'no user'}`),
    );
    const gone = [
      'user', 'sign-out', 'nav-dashboard', 'start-training', 'training-status', 'training-runs', 'accept', 'reject',
      'comparison', 'models-table', 'metric-chart', 'serving-summary', 'timeline', 'subscribe', 'file-input',
    ];
    const pages = {};
    for (const id of ['training', 'review', 'history', 'dashboard', 'notifications']) {
      // Signed out there is no nav: go by the address, as a bookmark or an email link would.
      await page.evaluate((h) => {
        location.hash = h;
      }, `#/${id}`);
      await page.waitForFunction((h) => location.hash === h, `#/${id}`);
      await page.getByTestId('signin-form').waitFor({ timeout: 5_000 }).catch(() => fail(`#/${id}: no sign-in form once signed out`));
      const left = [];
      for (const t of gone) if ((await page.getByTestId(t).count()) > 0) left.push(t);
      expect(left.length === 0, `#/${id} still shows ${left.join(', ')} after signing out`);
      pages[id] = (await page.locator('main h1').innerText()).trim();
    }
    // The tokens were in memory only: nothing of them is left in the browser.
    const stored = await page.evaluate(() => ({
      local: Object.keys(localStorage).map((k) => `${k}=${localStorage.getItem(k)}`),
      session: Object.keys(sessionStorage).map((k) => `${k}=${sessionStorage.getItem(k)}`),
      cookies: document.cookie,
    }));
    const leaked = token && JSON.stringify(stored).includes(token.split('.')[1] ?? token);
    expect(!leaked, `the ID token is still stored in the browser after signing out: ${JSON.stringify(stored).slice(0, 300)}`);
    expect(!stored.cookies, `the app left cookies: ${stored.cookies}`);
    // The API itself refuses a call without a token.
    const anonymous = await apiGet('models', { token: null });
    expect(anonymous.status === 401, `GET api/models without a token: expected 401, got ${anonymous.status}`);
    summary.signed_out = { headings: pages, storage: stored, anonymous_models_status: anonymous.status };
    rec.detail = summary.signed_out;
    await axe('signed-out');
  });

  await browser.close();
}

// ------------------------------------------------------------------ run

const watchdog = setTimeout(() => {
  summary.failures.push({ kind: 'timeout', message: `the browser test did not finish in ${OVERALL_TIMEOUT_MS / 60000} minutes` });
  writeSummary();
  console.error(`FAILED: the browser test did not finish in ${OVERALL_TIMEOUT_MS / 60000} minutes`);
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

try {
  await main();
} catch (e) {
  summary.failures.push({ kind: 'run', message: `the browser test stopped: ${e?.stack ?? e}` });
}
clearTimeout(watchdog);

for (const e of summary.page_errors) summary.failures.push({ kind: 'page-error', message: `the page threw: ${e}` });
for (const v of summary.csp_violations) summary.failures.push({ kind: 'csp', message: `Content-Security-Policy violation: ${v}` });
for (const u of summary.api_requests.without_token) {
  summary.failures.push({ kind: 'auth', message: `an API call went without the ID token: ${u}` });
}
for (const u of summary.api_requests.bearer_prefixed) {
  summary.failures.push({ kind: 'auth', message: `an API call sent "Bearer <token>" instead of the raw ID token: ${u}` });
}
if (summary.steps.some((s) => s.ok) && summary.api_requests.with_token === 0) {
  summary.failures.push({ kind: 'auth', message: 'no API call carried an ID token' });
}
for (const u of [...new Set(summary.foreign_requests)]) {
  summary.failures.push({
    kind: 'network',
    message: `a request left the app's origin ${ORIGIN} (and the user pool's ${summary.auth_endpoint ?? 'endpoint'}): ${u}`,
  });
}
summary.ok = summary.failures.length === 0;
writeSummary();

log('');
log('step                      result   seconds  screenshot');
for (const s of summary.steps) {
  log(
    `${String(s.n).padStart(2, '0')} ${s.name.padEnd(22)} ${(s.skipped ? 'skipped' : s.ok ? 'ok' : 'FAILED').padEnd(8)} ${String(s.seconds).padStart(7)}  ${s.screenshot ?? ''}`,
  );
}
const axeLine = Object.entries(summary.axe)
  .map(([k, v]) => `${k}: ${v.error ? 'error' : v.violations.length ? v.violations.map((x) => `${x.id}/${x.impact}`).join(' ') : 'none'}`)
  .join('; ');
log(`axe-core violations: ${axeLine || 'not run'}`);
if (summary.console_errors.length) log(`console errors (not failures): ${JSON.stringify(summary.console_errors.slice(0, 10))}`);
log(`summary: ${join(OUT_DIR, 'summary.json')}`);
if (summary.ok) {
  log(`browser: ${summary.steps.length} passed, 0 failed in ${summary.seconds} s`);
  process.exit(0);
}
console.error(`\nFAILED (${summary.failures.length}):`);
for (const f of summary.failures) console.error(`- [${f.kind}] ${f.message}`);
process.exit(1);

// ------------------------------------------------------------------ the chart's pixels

/**
 * What the metric chart's canvas shows: painted pixels, pixels in each series colour, and those
 * in the plot area (the top 60 % of the canvas; the legend and the x axis are below it).
 */
async function chartPixels(chart) {
  return chart.evaluate((canvas, colours) => {
    const ctx = canvas.getContext('2d');
    const w = canvas.width;
    const h = canvas.height;
    if (!ctx || !w || !h) return { width: w, height: h, painted: 0, series_pixels_in_plot: 0, series_in_plot: {} };
    const d = ctx.getImageData(0, 0, w, h).data;
    const plotBottom = Math.floor(h * 0.6);
    const inPlot = Object.fromEntries(Object.keys(colours).map((k) => [k, 0]));
    let painted = 0;
    let seriesInPlot = 0;
    for (let i = 0; i < d.length; i += 4) {
      const a = d[i + 3];
      if (a === 0) continue;
      painted += 1;
      if (a < 200 || Math.floor(i / 4 / w) >= plotBottom) continue;
      for (const [k, [r, g, b]] of Object.entries(colours)) {
        if (Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) <= 40) {
          inPlot[k] += 1;
          seriesInPlot += 1;
          break;
        }
      }
    }
    return { width: w, height: h, painted, series_pixels_in_plot: seriesInPlot, series_in_plot: inPlot };
  }, SERIES_COLOURS);
}
