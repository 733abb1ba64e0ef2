// End-to-end test of the admin web UI in Chromium (run by tests/ui/main.rs, which starts the
// server and passes everything in the environment). Exits non-zero on the first failure.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import crypto from "node:crypto";
import http from "node:http";
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

// A local receiver for webhooks and ARI MWI pushes: records every request, answers 204.
const received = [];
const receiver = http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    received.push({ method: req.method, url: req.url, headers: req.headers, body });
    res.writeHead(204);
    res.end();
  });
});
await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
const RECEIVER = `http://127.0.0.1:${receiver.address().port}`;
const waitFor = async (what, pred, ms = 10000) => {
  const until = Date.now() + ms;
  for (;;) {
    const hit = pred();
    if (hit) return hit;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

const browser = await chromium.launch({
  executablePath: env("TEST_CHROMIUM"),
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
  ],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, permissions: ["microphone"] });
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

  const api = (url, init = {}) =>
    fetch(`${BASE}${url}`, { ...init, headers: { authorization: `Bearer ${API_KEY}`, ...(init.headers || {}) } });
  page.on("dialog", (d) => d.accept());
  const tabCount = async (folder) =>
    (await page.locator(`[data-folder-count="${folder}"]`).textContent()).trim();

  log("the mailbox's messages, per folder");
  await page.goto(`${BASE}/ui/contexts/acme/mailboxes`);
  await page.getByRole("link", { name: "Messages of 1001@acme" }).click();
  await page.waitForURL(/\/mailboxes\/1001\/messages/);
  check((await tabCount("INBOX")) === "1" && (await tabCount("Old")) === "0", "folder counts 1/0");
  check((await page.locator("tr[data-message]").count()) === 1, "one row");
  await shot(page, "12-messages");

  log("open the message: the <audio> plays the Opus rendition with the message's duration");
  const listed = await (await api("/v1/mailboxes/1001@acme/messages")).json();
  const msg = (listed.items || listed.messages || listed)[0];
  check(msg && msg.id, `a message listed: ${JSON.stringify(listed).slice(0, 200)}`);
  await page.locator(`tr[data-message="${msg.id}"] a.strong`).click();
  await page.waitForURL(new RegExp(`/messages/${msg.id}`));
  const duration = await page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const a = document.getElementById("player-audio");
        const done = () => (isFinite(a.duration) ? resolve(a.duration) : null);
        if (a.readyState >= 1 && done() !== null) return;
        a.addEventListener("loadedmetadata", done);
        a.addEventListener("durationchange", done);
        a.addEventListener("error", () => reject(new Error(`audio error ${a.error && a.error.code}`)));
        a.load();
        setTimeout(() => reject(new Error("no metadata in 10 s")), 10000);
      }),
  );
  const expected = msg.duration_ms / 1000;
  check(Math.abs(duration - expected) <= 0.1, `audio duration ${duration} vs message ${expected}`);
  const ranged = await page.request.get(`${BASE}${await page.locator("#player-audio").getAttribute("src")}`, {
    headers: { range: "bytes=0-99" },
  });
  check(ranged.status() === 206 && (await ranged.body()).length === 100, `range answered ${ranged.status()}`);
  check(ranged.headers()["content-type"].startsWith("audio/ogg"), "Ogg Opus");
  await page.locator('#waveform[data-ready="1"]').waitFor({ timeout: 10000 });
  await page.evaluate(() => {
    const a = document.getElementById("player-audio");
    a.currentTime = a.duration / 3;
  });
  await page.waitForTimeout(300);
  const wav = await page.request.get(`${BASE}${await page.getByRole("link", { name: "Download WAV" }).getAttribute("href")}`);
  check(wav.status() === 200 && wav.headers()["content-type"].startsWith("audio/wav"), "WAV download");
  check(wav.headers()["content-disposition"].startsWith("attachment"), "as attachment");
  await shot(page, "13-message");

  log("move it to Old: the folder counts and MWI change");
  await page.getByLabel("Move to").selectOption("Old");
  await page.getByRole("button", { name: "Move", exact: true }).click();
  await page.getByText("Message moved.").waitFor();
  check((await tabCount("INBOX")) === "0" && (await tabCount("Old")) === "1", "folder counts 0/1");
  const mwi = await (await api("/v1/mailboxes/1001@acme/mwi")).json();
  check(mwi.new === 0 && mwi.old === 1, `MWI after the move: ${JSON.stringify(mwi)}`);

  log("mark it unread and read again");
  await page.goto(`${BASE}/ui/contexts/acme/mailboxes/1001/messages/${msg.id}`);
  await page.getByRole("button", { name: "Mark unread" }).click();
  await page.getByText("Marked as unread.").waitFor();
  check((await page.locator("#message-status").textContent()).trim() === "Unread", "unread");
  await page.getByRole("button", { name: "Mark read" }).click();
  await page.getByText("Marked as read.").waitFor();
  check((await page.locator("#message-status").textContent()).trim() === "Read", "read");
  check((await page.locator("#message-folder").textContent()).trim() === "Old", "read messages live in Old");

  log("a message left meanwhile is announced on the messages page");
  await page.goto(`${BASE}/ui/contexts/acme/mailboxes/1001/messages?folder=Old`);
  await page.waitForTimeout(500);
  const d2 = await api("/v1/mailboxes/1001@acme/messages", {
    method: "POST", headers: { "content-type": "audio/wav" }, body: readFileSync(AUDIO),
  });
  check(d2.status === 201, `second deposit answered ${d2.status}`);
  const second = (await d2.json()).id;
  await page.locator("#arrived:not([hidden])").waitFor({ timeout: 10000 });
  await page.waitForFunction(
    () => document.querySelector('[data-folder-count="INBOX"]')?.textContent.trim() === "1",
    null,
    { timeout: 10000 },
  );
  await shot(page, "21-message-arrived");
  await page.getByRole("link", { name: "Refresh the list" }).click();
  await page.waitForURL(/folder=Old/);
  check((await tabCount("INBOX")) === "1", "the new one counted");
  const del = await api(`/v1/mailboxes/1001@acme/messages/${second}`, { method: "DELETE" });
  check(del.status === 204, `cleanup answered ${del.status}`);
  await page.reload();

  log("bulk: select all in Old and move to Work");
  await page.goto(`${BASE}/ui/contexts/acme/mailboxes/1001/messages?folder=Old`);
  await page.waitForURL(/folder=Old/);
  await page.getByLabel("Select all").check();
  await page.getByLabel("Move selected to").selectOption("Work");
  await shot(page, "14-messages-bulk");
  await page.getByRole("button", { name: "Move selected" }).click();
  await page.getByText("Messages moved.").waitFor();
  check((await tabCount("Old")) === "0" && (await tabCount("Work")) === "1", "moved to Work");

  log("forward it (a copy lands in New), then bulk-delete the copy");
  await page.goto(`${BASE}/ui/contexts/acme/mailboxes/1001/messages/${msg.id}`);
  await page.getByLabel("Forward to").fill("1001");
  await page.getByRole("button", { name: "Forward" }).click();
  await page.getByText("Message forwarded.").waitFor();
  await page.goto(`${BASE}/ui/contexts/acme/mailboxes/1001/messages`);
  check((await tabCount("INBOX")) === "1" && (await tabCount("Work")) === "1", "copy in New");
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, "19-messages-phone");
  await page.goto(`${BASE}/ui/contexts/acme/mailboxes/1001/messages/${msg.id}`);
  await page.locator('#waveform[data-ready="1"]').waitFor({ timeout: 10000 });
  await shot(page, "20-message-phone");
  await page.setViewportSize({ width: 1280, height: 860 });
  await page.goto(`${BASE}/ui/contexts/acme/mailboxes/1001/messages`);
  await page.getByLabel("Select all").check();
  await page.getByRole("button", { name: "Delete selected" }).click();
  await page.getByText("Messages deleted.").waitFor();
  check((await tabCount("INBOX")) === "0" && (await tabCount("Work")) === "1", "copy deleted");

  log("greetings: record one with the fake microphone, then play it back");
  await page.getByRole("link", { name: "Greetings" }).click();
  await page.waitForURL(/\/greetings/);
  await page.getByRole("button", { name: "Record the Unavailable greeting" }).click();
  await page.locator("#greeting-unavailable .recording").waitFor();
  await page.waitForTimeout(2500);
  await page.getByRole("button", { name: "Stop recording the Unavailable greeting" }).click();
  await page.waitForURL(/notice=saved/, { timeout: 15000 });
  const played = await page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const a = document.querySelector("#greeting-unavailable audio");
        if (!a) return reject(new Error("no audio element"));
        a.addEventListener("error", () => reject(new Error(`audio error ${a.error && a.error.code}`)));
        a.play().then(() => setTimeout(() => resolve({ d: a.duration, t: a.currentTime }), 700), reject);
        setTimeout(() => reject(new Error("did not play in 10 s")), 10000);
      }),
  );
  check(played.d > 0 && played.t > 0, `greeting plays: ${JSON.stringify(played)}`);
  const g = await (await api("/v1/mailboxes/1001@acme/greetings/unavailable", { headers: { accept: "application/json" } })).json();
  check(g.duration_ms > 1000, `greeting stored: ${JSON.stringify(g)}`);

  log("greetings: upload a file");
  await page.locator("#file-busy").setInputFiles(AUDIO);
  await page.getByRole("button", { name: "Upload the Busy greeting" }).click();
  await page.waitForURL(/notice=saved/);
  check((await page.locator("#greeting-busy audio").count()) === 1, "busy greeting set");
  await shot(page, "15-greetings");
  const noToken = await page.request.post(`${BASE}/ui/contexts/acme/mailboxes/1001/greetings/temp`, {
    headers: { "content-type": "audio/wav" }, data: readFileSync(AUDIO),
  });
  check(noToken.status() === 403, `recording POST without token answered ${noToken.status()}`);

  log("greetings: delete one");
  await page.getByRole("button", { name: "Delete the Busy greeting" }).click();
  await page.getByText("Greeting deleted.").waitFor();
  check((await page.locator("#greeting-busy audio").count()) === 0, "busy greeting gone");

  log("API keys: create (token shown once), use, revoke → 401");
  await page.getByRole("link", { name: "API keys" }).click();
  await page.getByLabel("Key name").fill("e2e-pbx");
  await page.getByLabel("Context").selectOption("acme");
  await page.getByRole("button", { name: "Create key" }).click();
  const token = await page.locator("#new-token").inputValue();
  check(token.startsWith("vxm_"), "token shown");
  await shot(page, "16-api-key-created");
  const useKey = () => fetch(`${BASE}/v1/mailboxes/1001@acme/mwi`, { headers: { authorization: `Bearer ${token}` } });
  check((await useKey()).status === 200, "new key works");
  await page.goto(`${BASE}/ui/api-keys`);
  check(!(await page.content()).includes(token), "token not shown again");
  await page.getByRole("button", { name: "Revoke e2e-pbx" }).click();
  await page.getByText("Key revoked.").waitFor();
  check((await useKey()).status === 401, "revoked key gets 401");
  await shot(page, "17-api-keys");


  log("webhooks: create one to a local receiver; the secret is shown once");
  await page.goto(`${BASE}/ui/contexts/acme/mailboxes`);
  await page.getByRole("link", { name: "Webhooks" }).click();
  await page.waitForURL(/\/ui\/contexts\/acme\/webhooks$/);
  await page.getByLabel("Receiver URL").fill(`${RECEIVER}/hook`);
  await page.getByLabel("message.deposited").check();
  await page.getByLabel("message.moved").check();
  await page.getByRole("button", { name: "Create webhook" }).click();
  const secret = await page.locator("#new-secret").inputValue();
  check(secret.startsWith("whsec_"), `secret shown: ${secret}`);
  await shot(page, "22-webhook-created");
  await page.getByRole("link", { name: "Webhooks", exact: true }).first().click();
  check((await page.locator(`tr[data-webhook="${RECEIVER}/hook"]`).count()) === 1, "webhook listed");
  check(!(await page.content()).includes(secret), "secret not shown again");
  await shot(page, "23-webhooks");

  log("webhooks: test-send delivers a signed POST now and shows it");
  await page.getByRole("link", { name: `Open the webhook ${RECEIVER}/hook` }).click();
  await page.getByRole("button", { name: "Send test" }).click();
  await page.locator('#test-result[data-status="delivered"]').waitFor({ timeout: 20000 });
  check((await page.locator('#deliveries tr[data-status="delivered"]').count()) === 1, "delivered row");
  const test = received.find((r) => r.headers["x-voxmail-event"] === "webhook.test");
  check(test && test.method === "POST" && test.url === "/hook", "the receiver got the test");
  const mac = crypto.createHmac("sha256", secret).update(`${test.headers["x-voxmail-timestamp"]}.${test.body}`).digest("hex");
  check(test.headers["x-voxmail-signature"] === `sha256=${mac}`, "test signed with the secret");
  check(JSON.parse(test.body).context === "acme", "test body names the context");
  await shot(page, "24-webhook-tested");
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, "24b-webhook-phone");
  await page.setViewportSize({ width: 1280, height: 860 });

  log("webhooks: a real event shows up in the recent deliveries");
  const d3 = await api("/v1/mailboxes/1001@acme/messages", {
    method: "POST", headers: { "content-type": "audio/wav" }, body: readFileSync(AUDIO),
  });
  check(d3.status === 201, `deposit answered ${d3.status}`);
  await waitFor("the deposit's webhook", () => received.find((r) => r.headers["x-voxmail-event"] === "message.deposited"));
  for (let i = 0; i < 50 && (await page.locator('#deliveries tr[data-status="delivered"]').count()) < 2; i++) {
    await page.waitForTimeout(200);
    await page.reload();
  }
  check((await page.locator('#deliveries tr[data-status="delivered"]').count()) === 2, "two deliveries listed");
  await shot(page, "25-webhook-deliveries");

  log("webhooks: disable, then delete with confirmation");
  await page.getByLabel("Active (deliver events)").uncheck();
  await page.getByRole("button", { name: "Save webhook" }).click();
  await page.getByText("Webhook saved.").waitFor();
  check((await page.locator("h1 .badge").textContent()).trim() === "Disabled", "disabled");
  await page.getByRole("link", { name: "Delete", exact: true }).click();
  await page.getByRole("heading", { name: "Delete this webhook?" }).waitFor();
  await page.getByRole("button", { name: "Delete webhook" }).click();
  await page.getByText("Webhook deleted.").waitFor();
  check((await page.locator("tr[data-webhook]").count()) === 0, "webhook gone");

  log("MWI push: an ARI target to the local receiver; test-send pushes the current counts");
  await page.getByRole("link", { name: "MWI push" }).click();
  await page.waitForURL(/\/mwi-targets$/);
  await page.getByLabel("Kind").selectOption("ari");
  await page.getByLabel("Address").fill(RECEIVER);
  await page.getByLabel("Username").fill("voxmail");
  await page.getByLabel("Password").fill("ari-secret");
  await page.getByRole("button", { name: "Create target" }).click();
  await page.getByText("Target created").waitFor();
  const pushesBefore = received.filter((r) => r.method === "PUT").length;
  await page.getByRole("button", { name: "Send test" }).click();
  await page.locator("#test-result").waitFor({ timeout: 20000 });
  check((await page.locator("#test-result").textContent()).includes("were pushed"), await page.locator("#test-result").textContent());
  check((await page.locator('tr[data-push="1001@acme"][data-state="Pushed"]').count()) === 1, "1001 pushed");
  const put = await waitFor("the ARI push", () =>
    received.slice(pushesBefore).find((r) => r.method === "PUT" && r.url.startsWith("/ari/mailboxes/1001@acme?")));
  const mwiNow = await (await api("/v1/mailboxes/1001@acme/mwi")).json();
  check(put.url.includes(`newMessages=${mwiNow.new}`) && put.url.includes(`oldMessages=${mwiNow.old}`), `ARI push ${put.url} vs ${JSON.stringify(mwiNow)}`);
  check(put.headers.authorization === `Basic ${Buffer.from("voxmail:ari-secret").toString("base64")}`, "basic auth");
  await shot(page, "26-mwi-target");
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, "27-mwi-target-phone");
  await page.setViewportSize({ width: 1280, height: 860 });
  await page.getByRole("link", { name: "MWI push", exact: true }).first().click();
  await page.getByRole("button", { name: "Resync all" }).click();
  await page.getByText("Current counts queued for every target").waitFor();
  await shot(page, "28-mwi-targets");
  const del2 = await api(`/v1/mailboxes/1001@acme/messages/${(await d3.json()).id}`, { method: "DELETE" });
  check(del2.status === 204, `cleanup answered ${del2.status}`);

  log("admins: create one limited to tenant-b; the one-time password is shown once");
  await page.getByRole("link", { name: "Admins" }).click();
  await page.waitForURL(`${BASE}/ui/admins`);
  await page.getByLabel("Email address").fill("tenant@example.org");
  await page.getByLabel("tenant-b").check();
  await page.getByRole("button", { name: "Create admin" }).click();
  const otp = await page.locator("#new-password").inputValue();
  check(otp.length >= 16, "one-time password shown");
  check((await page.locator('tr[data-admin="tenant@example.org"]').textContent()).includes("tenant-b"), "limit listed");
  await shot(page, "29-admins");
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, "29b-admins-phone");
  await page.setViewportSize({ width: 1280, height: 860 });

  log("the new admin signs in, sees only tenant-b and no admins page");
  const other2 = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const p3 = await other2.newPage();
  p3.on("pageerror", (e) => errors.push(String(e)));
  await signIn(p3, "tenant@example.org", otp);
  await p3.waitForURL(`${BASE}/ui/`);
  check((await p3.getByRole("link", { name: "Admins" }).count()) === 0, "no Admins link");
  const adminsPage = await p3.goto(`${BASE}/ui/admins`);
  check(adminsPage.status() === 404, `limited admin's admins page answered ${adminsPage.status()}`);
  const hooksOther = await p3.goto(`${BASE}/ui/contexts/acme/webhooks`);
  check(hooksOther.status() === 404, `other context's webhooks answered ${hooksOther.status()}`);
  const hooksOwn = await p3.goto(`${BASE}/ui/contexts/tenant-b/webhooks`);
  check(hooksOwn.status() === 200, `own context's webhooks answered ${hooksOwn.status()}`);

  log("admins: disable ends their session; enable, reset the password, delete");
  await page.getByRole("link", { name: "Manage tenant@example.org" }).click();
  await page.getByRole("button", { name: "Disable account" }).click();
  await page.getByText("Account disabled").waitFor();
  await shot(page, "30-admin-user");
  await p3.goto(`${BASE}/ui/`);
  check(p3.url().endsWith("/ui/login"), "disabled admin signed out");
  await page.getByRole("button", { name: "Enable account" }).click();
  await page.getByText("Account enabled.").waitFor();
  await page.getByRole("button", { name: "Reset password" }).click();
  const otp2 = await page.locator("#new-password").inputValue();
  check(otp2.length >= 16 && otp2 !== otp, "new one-time password");
  await signIn(p3, "tenant@example.org", otp2);
  await p3.waitForURL(`${BASE}/ui/`);
  await other2.close();
  await page.goto(`${BASE}/ui/admins`);
  await page.getByRole("link", { name: `Manage ${ADMIN}` }).click();
  check((await page.getByRole("button", { name: "Disable account" }).count()) === 0, "cannot disable yourself");
  await page.goto(`${BASE}/ui/admins`);
  await page.getByRole("link", { name: "Manage tenant@example.org" }).click();
  await page.getByRole("link", { name: "Delete admin" }).click();
  await page.getByRole("button", { name: "Delete admin" }).click();
  await page.getByText("Admin deleted.").waitFor();
  check((await page.locator('tr[data-admin="tenant@example.org"]').count()) === 0, "admin deleted");

  log("the audit log lists those actions");
  await page.getByRole("link", { name: "Audit log" }).click();
  for (const a of ["message.unread", "message.read", "message.move", "message.forward", "message.delete", "greeting.put", "greeting.delete", "apikey.create", "apikey.revoke", "webhook.create", "webhook.test", "webhook.update", "webhook.delete", "mwi_target.create", "mwi_target.test", "mwi.resync", "admin.create", "admin.disable", "admin.enable", "admin.password", "admin.delete"]) {
    check((await page.locator(`tr[data-action="${a}"]`).count()) >= 1, `audit lists ${a}`);
  }
  await shot(page, "18-audit");

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
  const otherMsgs = await p2.goto(`${BASE}/ui/contexts/acme/mailboxes/1001/messages`);
  check(otherMsgs.status() === 404, `other mailbox's messages answered ${otherMsgs.status()}`);
  const otherAudio = await p2.request.get(`${BASE}/ui/contexts/acme/mailboxes/1001/messages/${msg.id}/audio?format=opus`);
  check(otherAudio.status() === 404, `other context's audio answered ${otherAudio.status()}`);
  check((await p2.request.get(`${BASE}/ui/api-keys`)).status() === 403, "limited admin: no API keys page");
  const sse = await p2.request.get(`${BASE}/ui/contexts/acme/events`);
  check(sse.status() === 404, `other context's events answered ${sse.status()}`);

  check(errors.length === 0, `no script errors: ${errors.join("; ")}`);
  console.log("e2e: all checks passed");
} catch (e) {
  console.error(`e2e failed at "${step}": ${e.stack || e}`);
  for (const p of browser.contexts().flatMap((c) => c.pages())) {
    console.error(`  page ${p.url()}`);
    await p.screenshot({ path: path.join(SHOTS, "failure.png"), fullPage: true }).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  await browser.close();
  receiver.close();
}
