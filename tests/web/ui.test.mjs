// The store's web UI in a real browser: Playwright (playwright-core)
// driving Debian's Chromium against `cloudshell store serve --emulated`.
//
//   node tests/web/ui.test.mjs          (after `cargo build --bins`)
//
// Uploads two files by drag and drop, sees them listed, opens a shard
// map, deletes a shard and sees the file degrade, repairs it back to
// healthy, takes a node offline and back, downloads a file and compares
// its SHA-256, adds a region, and checks that a page on another site
// cannot act through the daemon. Screenshots go to tests/web/screenshots/ (or
// $UI_SCREENSHOTS).

import { createServer } from "node:http";
import { createHash } from "node:crypto";
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { killAgentsUnder, startDaemon } from "./daemon.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const target = process.env.CARGO_TARGET_DIR || join(root, "target");
const cli = process.env.CLOUDSHELL_BIN || join(target, "debug", "cloudshell");
const shots = process.env.UI_SCREENSHOTS || join(here, "screenshots");
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
mkdirSync(shots, { recursive: true });

function fail(message) {
  console.error(`ui test: FAILED: ${message}`);
  process.exitCode = 1;
  throw new Error(message);
}

function assert(ok, message) {
  if (!ok) fail(message);
}

const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");

function pseudoRandom(n, seed) {
  const out = Buffer.alloc(n);
  let x = BigInt(seed) * 0x9e3779b97f4a7c15n + 1n;
  const mask = (1n << 64n) - 1n;
  for (let i = 0; i < n; i += 8) {
    x ^= (x << 13n) & mask;
    x ^= x >> 7n;
    x ^= (x << 17n) & mask;
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(x);
    b.copy(out, i, 0, Math.min(8, n - i));
  }
  return out;
}

let failureShot = null;

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "store-ui-"));
  const { daemon, url } = await startDaemon(cli, dir);
  const browser = await chromium.launch({
    executablePath: browserPath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, acceptDownloads: true, colorScheme: "light" });
    const page = await context.newPage();
    const offsite = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(url)) offsite.push(r.url());
    });
    page.on("pageerror", (e) => fail(`page error: ${e.message}`));
    page.on("console", (m) => console.log(`browser: ${m.text()}`));
    failureShot = () => page.screenshot({ path: join(shots, "failure.png"), fullPage: true });
    await page.goto(url);
    await page.waitForSelector("body[data-loaded='true']");
    await page.waitForSelector("body[data-live='true']");
    await page.screenshot({ path: join(shots, "01-empty.png") });

    // Two files by drag and drop.
    const files = [
      { name: "holiday-photos.tar", bytes: pseudoRandom(3_300_000, 1) },
      { name: "notes.txt", bytes: Buffer.from("Stored in nine regions; any three can go.\n".repeat(500)) },
    ];
    const dataTransfer = await page.evaluateHandle((list) => {
      const dt = new DataTransfer();
      for (const f of list) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name));
      return dt;
    }, files.map((f) => ({ name: f.name, b64: f.bytes.toString("base64") })));
    await page.dispatchEvent("#drop", "dragenter", { dataTransfer });
    await page.dispatchEvent("#drop", "drop", { dataTransfer });
    for (const f of files) {
      await page.waitForSelector(`tr[data-name="${f.name}"] [data-health="healthy"]`, { timeout: 60_000 });
    }
    await page.screenshot({ path: join(shots, "02-files.png") });

    // The shard map of the first file.
    await page.click(`tr[data-name="${files[0].name}"] a.file-link`);
    await page.waitForSelector(".chunk-row .cell[data-state='ok']");
    const cells = await page.locator(".chunk-row .cell").count();
    assert(cells === 4 * 9, `expected 4 chunks of 9 shards, saw ${cells} cells`);
    await page.screenshot({ path: join(shots, "03-shard-map.png"), fullPage: true });

    // Delete a shard: the file goes degraded (live, through the events).
    await page.click(".cell[data-chunk='1'][data-shard='4']");
    await page.click("#confirm-ok");
    await page.waitForSelector(".cell[data-chunk='1'][data-shard='4'][data-state='missing']");
    await page.waitForSelector("#file-health [data-health='degraded']");
    const degraded = await page.textContent("#file-health");
    assert(degraded.includes("survives 2 more"), `degraded badge says ${degraded}`);
    await page.screenshot({ path: join(shots, "04-degraded.png"), fullPage: true });

    // Repair: healthy again, and the job's result is shown.
    await page.click("#file-repair");
    await page.waitForSelector("#file-health [data-health='healthy']", { timeout: 60_000 });
    await page.waitForSelector(".toast.done:has-text('1 shards rebuilt')", { timeout: 60_000 });
    await page.screenshot({ path: join(shots, "05-repaired.png"), fullPage: true });

    // Nodes: take one offline and see its card change; bring it back.
    await page.click("nav a[data-view='nodes']");
    await page.waitForSelector(".card[data-state='connected']");
    await page.waitForSelector("#map svg .node");
    const node = "eu-west-1";
    await page.click(`.card[data-node='${node}'] button`);
    await page.waitForSelector(`.card[data-node='${node}'][data-state='offline']`);
    await page.screenshot({ path: join(shots, "06-nodes-offline.png"), fullPage: true });
    // Scrub now: agents hash their shards where they are; the result shows.
    await page.click("#act-scrub");
    await page.waitForSelector(".toast.done:has-text('shards verified in place')", { timeout: 60_000 });
    // The files view shows the file degraded while a node holding its shards is out.
    await page.click("nav a[data-view='files']");
    await page.waitForSelector(`tr[data-name="${files[0].name}"] [data-health="degraded"]`);
    await page.click("nav a[data-view='nodes']");
    await page.click(`.card[data-node='${node}'] button`);
    await page.waitForSelector(`.card[data-node='${node}'][data-state='connected']`);
    // Removing a node is asked to be confirmed, and with nine nodes the
    // daemon refuses, saying why; the header shows what the nodes hold.
    await page.click(`.card[data-node='${node}'] button[data-remove]`);
    await page.click("#confirm-ok");
    await page.waitForSelector(".toast.failed:has-text('would leave 8 nodes serving')");
    const capacity = await page.textContent("[data-capacity]");
    assert(/free of .*(KiB|MiB|GiB)/.test(capacity), `the header's capacity says ${capacity}`);
    await page.screenshot({ path: join(shots, "06b-remove-refused.png"), fullPage: true });

    // Download and compare.
    await page.click("nav a[data-view='files']");
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.click(`tr[data-name="${files[0].name}"] a[download]`),
    ]);
    const saved = join(dir, "downloaded");
    await download.saveAs(saved);
    assert(sha256(readFileSync(saved)) === sha256(files[0].bytes), "the downloaded file's SHA-256 differs");

    // Keyboard: the drop zone and the first row's actions are reachable.
    await page.focus("#search");
    await page.keyboard.type("notes");
    const visible = await page.locator("#file-rows tr").count();
    assert(visible === 1, `search left ${visible} rows`);
    await page.fill("#search", "");

    // Another site open in the same browser cannot act through the
    // daemon: a form that posts itself (a "simple" request CORS lets
    // through) and a no-cors fetch, from a page on another origin.
    const evilServer = createServer((req, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(`<iframe name="sink"></iframe>
        <form id="f" method="POST" target="sink" action="${url}/api/nodes/${node}/offline"></form>
        <script>
          fetch("${url}/api/nodes/us-east-1/offline", { method: "POST", mode: "no-cors" })
            .finally(() => { document.getElementById("f").submit(); document.title = "sent"; });
        </script>`);
    });
    await new Promise((r) => evilServer.listen(0, "127.0.0.1", r));
    const evil = await context.newPage();
    await evil.goto(`http://localhost:${evilServer.address().port}/`);
    await evil.waitForFunction(() => document.title === "sent");
    await evil.waitForTimeout(1500);
    const after = await (await fetch(`${url}/api/nodes`)).json();
    const offline = after.nodes.filter((n) => n.state === "offline").map((n) => n.region);
    assert(offline.length === 0, `a page on another site took nodes offline: ${offline}`);
    await evil.close();
    evilServer.close();

    // Add a region: the list offers what the principal lacks, and the
    // node it picks comes up.
    await page.click("nav a[data-view='nodes']");
    const offered = await page.$$eval("#add-region option", (os) => os.map((o) => o.value));
    assert(offered.includes("default:sa-east-1") && !offered.includes("default:us-east-1"), `add-region offers ${offered}`);
    await page.selectOption("#add-region", "default:sa-east-1");
    await page.click("#act-add");
    await page.waitForSelector(".toast:has-text('Adding sa-east-1')");
    await page.waitForSelector(".card[data-node='sa-east-1'][data-state='connected']", { timeout: 120_000 });
    const still = await page.$$eval("#add-region option", (os) => os.map((o) => o.value));
    assert(!still.includes("default:sa-east-1"), "sa-east-1 is still offered once added");

    // Dark and narrow.
    const dark = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: "dark" });
    const darkPage = await dark.newPage();
    await darkPage.goto(`${url}/#/nodes`);
    await darkPage.waitForSelector(".card[data-state='connected']");
    await darkPage.screenshot({ path: join(shots, "07-nodes-dark.png"), fullPage: true });
    const narrow = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: "light" });
    const narrowPage = await narrow.newPage();
    await narrowPage.goto(url);
    await narrowPage.waitForSelector(`tr[data-name="${files[1].name}"]`);
    await narrowPage.screenshot({ path: join(shots, "08-files-narrow.png"), fullPage: true });
    const overflow = await narrowPage.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    assert(!overflow, "the narrow page scrolls sideways");

    assert(offsite.length === 0, `requests off this machine: ${offsite.join(", ")}`);
    console.log(`ui test: ok (screenshots in ${shots})`);
  } catch (e) {
    if (failureShot) await failureShot().catch(() => {});
    throw e;
  } finally {
    await browser.close();
    daemon.kill("SIGKILL");
    killAgentsUnder(dir);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
