// End-to-end test of the admin web UI in Chromium (run by tests/ui/main.rs, which starts the
// server and passes everything in the environment). Exits non-zero on the first failure.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const require = createRequire(path.join(env("TEST_PLAYWRIGHT_DIR"), "package.json"));
const { chromium } = require("playwright-core");

const BASE = env("UI_BASE");
const ADMIN = env("UI_ADMIN_EMAIL");
const LIMITED = env("UI_LIMITED_EMAIL");
const PASSWORD = env("UI_PASSWORD");
const API_KEY = env("UI_API_KEY");
const AUDIO = env("UI_AUDIO");
const SHOTS = env("UI_SCREENSHOTS");

let step = "start";
const log = (s) => {
  step = s;
  console.log(`· ${s}`);
};
const check = (ok, what) => {
  if (!ok) throw new Error(`check failed: ${what}`);
};
const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

async function signIn(page, email, password) {
  await page.goto(`${BASE}/ui/login`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

const browser = await chromium.launch({
  executablePath: env("TEST_CHROMIUM"),
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  const errors = [];
  // Script errors only: the 401 of the wrong password and the 404s are expected responses.
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));

  log("/ leads to the sign-in page");
  await page.goto(`${BASE}/`);
  check(page.url().endsWith("/ui/login"), `at sign-in, not ${page.url()}`);
  await shot(page, "01-login");

  log("a wrong password shows an error");
  await signIn(page, ADMIN, "not the password");
  await page.locator("#login-error").waitFor();
  check((await page.locator("#login-error").textContent()).includes("wrong"), "error text");
  await shot(page, "02-login-error");

  log("the right password opens the dashboard with totals");
  await signIn(page, ADMIN, PASSWORD);
  await page.waitForURL(`${BASE}/ui/`);
  check((await page.locator("#total-contexts").textContent()).trim() === "1", "one context");
  check((await page.locator("#total-mailboxes").textContent()).trim() === "0", "no mailboxes");
  await page.locator("#deposits-chart svg rect").first().waitFor();
  check((await page.locator("#deposits-chart svg rect").count()) === 30, "30 bars");

  log("create a context");
  await page.getByRole("link", { name: "Contexts" }).click();
  await page.getByLabel("Name").fill("acme");
  await page.getByLabel("Description").fill("Acme Corp. headquarters");
  await shot(page, "04-contexts");
  await page.getByRole("button", { name: "Create context" }).click();
  await page.waitForURL(`${BASE}/ui/contexts/acme/mailboxes`);

  log("create a mailbox with its options");
  await page.getByRole("link", { name: "New mailbox" }).click();
  await page.getByLabel("Mailbox number").fill("1001");
  await page.getByLabel("Full name").fill("Ada Lovelace");
  await page.getByLabel("Email", { exact: false }).first().fill("ada@acme.example");
  await page.getByLabel("PIN", { exact: false }).first().fill("4321");
  await page.getByLabel("Maximum messages").fill("50");
  await page.getByLabel("Attachment format").selectOption("opus");
  await page.getByLabel("Time zone", { exact: false }).fill("Europe/Paris");
  await shot(page, "05-mailbox-new");
  await page.getByRole("button", { name: "Create mailbox" }).click();
  await page.waitForURL(/\/ui\/contexts\/acme\/mailboxes\?/);
  check(await page.getByText("Mailbox created.").isVisible(), "notice");

  log("a second mailbox, and the list without search");
  await page.goto(`${BASE}/ui/contexts/acme/mailboxes/new`);
  await page.getByLabel("Mailbox number").fill("1002");
  await page.getByLabel("Full name").fill("Grace Hopper");
  await page.getByRole("button", { name: "Create mailbox" }).click();
  await page.waitForURL(/notice=created/);
  await page.goto(`${BASE}/ui/contexts/acme/mailboxes`);
  const row = page.locator('tr[data-mailbox="1001@acme"]');
  check((await row.locator('[data-count="new"]').textContent()) === "0", "no message yet");

  log("a deposit through the API updates the row's count live");
  await page.locator('#live[data-state="on"]').waitFor({ timeout: 10000 });
  const r = await fetch(`${BASE}/v1/mailboxes/1001@acme/messages`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}`, "content-type": "audio/wav" },
    body: readFileSync(AUDIO),
  });
  check(r.status === 201, `deposit answered ${r.status}: ${await r.text()}`);
  await page.waitForFunction(
    () => document.querySelector('tr[data-mailbox="1001@acme"] [data-count="new"]')?.textContent === "1",
    null,
    { timeout: 10000 },
  );
  await page.waitForTimeout(2000);
  await shot(page, "06-mailboxes-live");

  log("search finds by name");
  await page.getByLabel("Search mailboxes").fill("grace");
  await page.getByRole("button", { name: "Search" }).click();
  await page.waitForURL(/q=grace/);
  check((await page.locator("tr[data-mailbox]").count()) === 1, "one match");

  log("edit a mailbox");
  await page.goto(`${BASE}/ui/contexts/acme/mailboxes/1001`);
  check((await page.getByLabel("Full name").inputValue()) === "Ada Lovelace", "name shown");
  check((await page.getByLabel("Maximum messages").inputValue()) === "50", "maxmsg shown");
  check((await page.getByLabel("Attachment format").inputValue()) === "opus", "attachfmt shown");
  await shot(page, "07-mailbox-edit");
  await page.getByLabel("Full name").fill("Ada King");
  await page.getByLabel("Remove the PIN").check();
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.waitForURL(/notice=saved/);
  check(await page.getByText("Ada King").isVisible(), "new name listed");
  const mbx = await (
    await fetch(`${BASE}/v1/mailboxes/1001@acme`, { headers: { authorization: `Bearer ${API_KEY}` } })
  ).json();
  check(mbx.fullname === "Ada King" && mbx.attachfmt === "opus" && mbx.maxmsg === 50, JSON.stringify(mbx));

  log("delete asks first");
  await page.goto(`${BASE}/ui/contexts/acme/mailboxes`);
  await page.getByRole("link", { name: "Delete 1002@acme" }).click();
  await page.getByRole("heading", { name: "Delete mailbox 1002@acme?" }).waitFor();
  await shot(page, "08-mailbox-delete");
  await page.getByRole("button", { name: "Delete mailbox" }).click();
  await page.waitForURL(/notice=deleted/);
  check((await page.locator('tr[data-mailbox="1002@acme"]').count()) === 0, "deleted");

  log("the dashboard counts the message");
  await page.goto(`${BASE}/ui/`);
  check((await page.locator("#total-messages").textContent()).trim() === "1", "one message");
  check((await page.locator("#total-new").textContent()).trim() === "1", "one new");
  await page.locator("#deposits-chart svg rect.bar").first().waitFor();
  await shot(page, "03-dashboard");

  log("a form POST without the CSRF token is refused");
  const forged = await page.request.post(`${BASE}/ui/contexts`, { form: { name: "forged" } });
  check(forged.status() === 403, `forged POST answered ${forged.status()}`);
  const wrong = await page.request.post(`${BASE}/ui/contexts`, { form: { name: "forged", csrf: "x" } });
  check(wrong.status() === 403, `wrong token answered ${wrong.status()}`);

  log("sign out");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByText("You are signed out.").waitFor();
  await page.goto(`${BASE}/ui/`);
  check(page.url().endsWith("/ui/login"), "signed out for good");

  log("a context-limited admin sees only their context (phone width)");
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
  const p2 = await phone.newPage();
  p2.on("pageerror", (e) => errors.push(String(e)));
  await signIn(p2, LIMITED, PASSWORD);
  await p2.waitForURL(`${BASE}/ui/`);
  check((await p2.locator("#total-contexts").textContent()).trim() === "1", "one context visible");
  await p2.locator("#deposits-chart svg").waitFor();
  await shot(p2, "09-dashboard-phone");
  await p2.goto(`${BASE}/ui/contexts`);
  check((await p2.locator("#contexts").textContent()).includes("tenant-b"), "own context listed");
  check(!(await p2.locator("#contexts").textContent()).includes("acme"), "other context hidden");
  check((await p2.getByRole("button", { name: "Create context" }).count()) === 0, "cannot create");
  await shot(p2, "10-contexts-phone");
  const other = await p2.goto(`${BASE}/ui/contexts/acme/mailboxes`);
  check(other.status() === 404, `other context answered ${other.status()}`);
  const otherEdit = await p2.goto(`${BASE}/ui/contexts/acme/mailboxes/1001`);
  check(otherEdit.status() === 404, `other mailbox answered ${otherEdit.status()}`);
  await shot(p2, "11-not-found-phone");
  const sse = await p2.request.get(`${BASE}/ui/contexts/acme/events`);
  check(sse.status() === 404, `other context's events answered ${sse.status()}`);

  check(errors.length === 0, `no script errors: ${errors.join("; ")}`);
  console.log("e2e: all checks passed");
} catch (e) {
  console.error(`e2e failed at "${step}": ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
