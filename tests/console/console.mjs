// The console's browser tests: playwright-core drives Debian's chromium (headless) against a real
// host that tests/tests/console.rs has set up. Every step says what it does; any failed check
// exits 1 with the reason. Inputs come from the environment (see console.rs).
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.PIPELINE_NPM_PREFIX, "node_modules/"));
const { chromium } = require("playwright-core");

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`missing environment variable ${name}`);
  return value;
};
const BASE = env("CONSOLE_URL");
const SHOTS = env("SCREENSHOTS");
const STEP_TIMEOUT = 30_000;

let stepName = "start";
const step = (name) => { stepName = name; console.log(`step: ${name}`); };
const check = (ok, message) => { if (!ok) throw new Error(message); };
const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

async function signIn(page, token) {
  await page.goto(`${BASE}/console/`);
  check(page.url().endsWith("/console/sign-in"), `not sent to the sign-in page: ${page.url()}`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${BASE}/console/`);
}

/** Reloads until `text` is in the page's main content, for at most STEP_TIMEOUT. */
async function reloadUntil(page, text) {
  const deadline = Date.now() + STEP_TIMEOUT;
  for (;;) {
    const body = await page.locator("main").innerText();
    if (body.includes(text)) return body;
    if (Date.now() > deadline) throw new Error(`"${text}" never appeared; page says:\n${body}`);
    await page.waitForTimeout(500);
    await page.reload();
  }
}

/** POSTs a form from inside the page (same origin, the session's cookie) and returns the status. */
async function post(page, url, fields) {
  return page.evaluate(async ({ url, fields }) => {
    const body = new URLSearchParams(fields);
    const response = await fetch(url, { method: "POST", body, redirect: "manual" });
    return response.status;
  }, { url, fields });
}

async function operator(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(STEP_TIMEOUT);
  const page = await context.newPage();

  step("a wrong token is refused at sign-in");
  await page.goto(`${BASE}/console/sign-in`);
  await shot(page, "sign-in");
  await page.getByLabel("API token").fill("not-a-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  check((await page.locator("[role=alert]").innerText()).includes("not valid"), "no error for a wrong token");

  step("sign in with the admin token");
  await signIn(page, env("ADMIN_TOKEN"));
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  check((await page.locator("main").innerText()).includes("anvil"), "the overview does not show the chain");

  step("see the webhook delivered from a real transfer");
  await page.getByRole("link", { name: "Deliveries" }).click();
  await page.getByLabel("Status").selectOption("delivered");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.getByRole("link", { name: env("DELIVERED_ID") }).click();
  const delivered = await page.locator("main").innerText();
  check(delivered.includes("delivered") && delivered.includes("transactionHash"), `not the delivered webhook:\n${delivered}`);
  check(/\n\s*1\s+\S.*\s200\s/.test(delivered) || delivered.includes("200"), "the attempt's 200 is not shown");
  await shot(page, "delivery-delivered");
  await page.goto(`${BASE}/console/deliveries`);
  await shot(page, "deliveries");

  step("retry the dead delivery after its receiver recovered");
  await page.goto(`${BASE}/console/deliveries/${env("DEAD_ID")}`);
  check((await page.locator("main").innerText()).includes("503"), "the failed attempts' 503 is not shown");
  await shot(page, "delivery-dead");
  await page.getByRole("button", { name: "Retry now" }).click();
  await page.getByText("Retry queued").waitFor();
  await reloadUntil(page, "delivered");

  step("the failing endpoint's page shows its failures");
  await page.goto(`${BASE}/console/endpoints/${env("FAILING_EP")}`);
  const endpoint = await page.locator("main").innerText();
  check(endpoint.includes("Recent failures") && endpoint.includes("503"), `no failures shown:\n${endpoint}`);
  await shot(page, "endpoint");
  await page.goto(`${BASE}/console/endpoints`);
  await shot(page, "endpoints");

  step("release the quarantined subscription with a fixed plugin, then reprocess its parked events");
  await page.goto(`${BASE}/console/subscriptions?status=quarantined`);
  await shot(page, "subscriptions");
  await page.getByRole("link", { name: env("TRAPPED_SUB") }).click();
  const quarantined = await page.locator("main").innerText();
  check(quarantined.includes("quarantined") && quarantined.includes(`Parked events (${env("TRAPPED_COUNT")})`),
    `not quarantined with parked events:\n${quarantined}`);
  await shot(page, "subscription-quarantined");
  await page.getByLabel("Plugin id").fill(env("FIXED_PLUGIN"));
  await page.getByLabel("Plugin config").fill('{"min_value":"0"}');
  await page.getByRole("button", { name: "Attach plugin and config" }).click();
  await page.getByText("Plugin and config attached").waitFor();
  check((await page.locator("dl.facts").innerText()).includes("active"), "still not active");
  await page.getByRole("button", { name: "Reprocess parked events" }).click();
  const n = env("TRAPPED_COUNT");
  await page.getByText(`Reprocessed ${n} parked events: ${n} queued for delivery`).waitFor();
  await shot(page, "subscription-released");

  step("upload a plugin and dry-run it on recorded logs");
  await page.goto(`${BASE}/console/plugins`);
  await page.getByLabel("Name").fill("passthrough-from-console");
  await page.getByLabel("WebAssembly module").setInputFiles(env("UPLOAD_WASM"));
  await page.getByRole("button", { name: "Upload" }).click();
  await page.getByText("Plugin uploaded").waitFor();
  await page.getByLabel("number of recorded logs").fill("20");
  await page.getByRole("button", { name: "Dry run" }).click();
  await page.getByText("20 events: 20 kept").waitFor();
  await shot(page, "plugin-dry-run");
  await page.goto(`${BASE}/console/plugins`);
  await shot(page, "plugins");

  step("a POST without the CSRF token (or with a wrong one) is refused");
  const target = `/console/subscriptions/${env("GOOD_SUB")}/status`;
  check(await post(page, target, { status: "paused" }) === 403, "a POST without a CSRF token was not refused");
  check(await post(page, target, { status: "paused", csrf: "0".repeat(48) }) === 403, "a wrong CSRF token was not refused");

  step("the overview draws its charts from the host's own samples");
  await page.goto(`${BASE}/console/`);
  await page.locator("figure.chart svg").first().waitFor();
  check(await page.locator("figure.chart").count() === 5, "five charts expected");
  await shot(page, "overview");

  step("sign out");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(`${BASE}/console/sign-in`);
  await page.goto(`${BASE}/console/deliveries`);
  check(page.url().endsWith("/console/sign-in"), "still signed in after signing out");
  await context.close();
}

async function readOnly(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(STEP_TIMEOUT);
  const page = await context.newPage();

  step("a read-only token sees everything, every action disabled");
  await signIn(page, env("READ_TOKEN"));
  await page.goto(`${BASE}/console/subscriptions/${env("GOOD_SUB")}`);
  check((await page.locator("main").innerText()).includes("read-only"), "no read-only notice");
  check(await page.getByRole("button", { name: "Pause" }).isDisabled(), "Pause is enabled for a read token");
  await shot(page, "read-only-subscription");
  const csrf = await page.locator("input[name=csrf]").first().inputValue();

  step("a read-only token is refused on every action");
  const sub = env("GOOD_SUB"), ep = env("FAILING_EP"), plugin = env("FIXED_PLUGIN");
  const actions = [
    [`/console/subscriptions/${sub}/status`, { status: "paused" }],
    [`/console/subscriptions/${sub}/plugin`, { plugin_id: "", plugin_config: "" }],
    [`/console/subscriptions/${sub}/reprocess`, {}],
    [`/console/endpoints/${ep}/status`, { status: "disabled" }],
    [`/console/endpoints/${ep}/rotate-secret`, {}],
    [`/console/endpoints/${ep}/recover`, { since: "2000-01-01T00:00:00Z" }],
    [`/console/deliveries/${env("DEAD_ID")}/retry`, {}],
    [`/console/plugins/${plugin}/dry-run`, { source: "recorded", count: "1", events: "", config: "null" }],
  ];
  for (const [url, fields] of actions) {
    const status = await post(page, url, { ...fields, csrf });
    check(status === 403, `${url}: a read-only token got ${status}, not 403`);
  }
  const upload = await page.evaluate(async (csrf) => {
    const form = new FormData();
    form.append("csrf", csrf);
    form.append("name", "not-allowed");
    form.append("wasm", new Blob([new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0])]), "x.wasm");
    return (await fetch("/console/plugins", { method: "POST", body: form })).status;
  }, csrf);
  check(upload === 403, `a read-only upload got ${upload}, not 403`);
  await page.goto(`${BASE}/console/endpoints/${ep}`);
  await page.getByRole("button", { name: "Rotate secret" }).waitFor();
  check(await page.getByRole("button", { name: "Rotate secret" }).isDisabled(), "Rotate secret is enabled for a read token");
  await page.goto(`${BASE}/console/plugins`);
  check(await page.getByRole("button", { name: "Upload" }).isDisabled(), "Upload is enabled for a read token");
  await context.close();
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
});
try {
  await operator(browser);
  await readOnly(browser);
  console.log("console: every step passed");
} catch (error) {
  console.error(`console: step "${stepName}" failed: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
