// The S3 endpoint from a web page in a real browser (Chromium driven by
// playwright-core): a page on another origin uploads with an HTML form
// POST (boto3's presigned POST policy, success_action_status 201), reads
// the object back and uploads with a presigned PUT through CORS (the PUT
// is preflighted), and a page on an origin the bucket's CORS rule does not
// name is refused by the browser.
//
//   node tests/web/s3.test.mjs          (after `cargo build --bins`)

import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { killAgentsUnder, startDaemon } from "./daemon.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const target = process.env.CARGO_TARGET_DIR || join(root, "target");
const cli = process.env.CLOUDSHELL_BIN || join(target, "debug", "cloudshell");
const python = process.env.CLOUDSHELL_TEST_PYTHON || "python3";
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";

function assert(ok, message) {
  if (!ok) throw new Error(`s3 browser test: FAILED: ${message}`);
}

/** A web server for one page, on its own origin. */
async function site(html) {
  const server = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(html);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "store-s3-web-"));
  const { daemon, url, s3 } = await startDaemon(cli, dir);
  const page1 = await site("<!doctype html><title>app</title><p>the app</p>");
  const page2 = await site("<!doctype html><title>other</title><p>another site</p>");
  const browser = await chromium.launch({
    executablePath: browserPath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  try {
    const env = { ...process.env, HOME: dir };
    const key = JSON.parse(execFileSync(cli, ["store", "--url", url, "--json", "keys", "create", "--user", "web"], { env })).key;
    const setup = JSON.parse(execFileSync(python, [join(root, "tests/python/s3_browser_setup.py"), s3, key.access_key_id, key.secret_access_key, page1.origin], {
      env: { ...env, AWS_EC2_METADATA_DISABLED: "true", AWS_CONFIG_FILE: join(dir, "none"), AWS_SHARED_CREDENTIALS_FILE: join(dir, "none") },
    }));
    const context = await browser.newContext();
    const app = await context.newPage();
    app.on("console", (m) => console.log(`browser: ${m.text()}`));
    await app.goto(page1.origin);

    // A form upload, as a page builds it: the policy's fields, then the file.
    const posted = await app.evaluate(async ({ post }) => {
      const form = new FormData();
      for (const [k, v] of Object.entries(post.fields)) form.append(k, v);
      form.append("file", new File(["hello from a form"], "hello.txt", { type: "text/plain" }));
      const r = await fetch(post.url, { method: "POST", body: form });
      return { status: r.status, body: await r.text() };
    }, setup);
    assert(posted.status === 201, `the form POST answered ${posted.status}: ${posted.body}`);
    assert(posted.body.includes("<Key>uploads/hello.txt</Key>") && posted.body.includes("<ETag>"), `the 201 body: ${posted.body}`);

    // A policy condition the form breaks is refused: a content type the
    // policy does not allow.
    const refused = await app.evaluate(async ({ post }) => {
      const form = new FormData();
      for (const [k, v] of Object.entries(post.fields)) form.append(k, k === "Content-Type" ? "image/png" : v);
      form.append("file", new File(["x"], "x.png"));
      const r = await fetch(post.url, { method: "POST", body: form });
      return { status: r.status, body: await r.text() };
    }, setup);
    assert(refused.status === 403, `a form against its policy answered ${refused.status}: ${refused.body}`);

    // Read back cross-origin: the body and an exposed header.
    const got = await app.evaluate(async ({ get }) => {
      const r = await fetch(get);
      return { status: r.status, body: await r.text(), etag: r.headers.get("etag") };
    }, setup);
    assert(got.status === 200 && got.body === "hello from a form", `the GET: ${JSON.stringify(got)}`);
    assert(got.etag && got.etag.length > 2, `ETag not exposed: ${JSON.stringify(got)}`);

    // A presigned PUT with a content type and metadata: preflighted.
    const put = await app.evaluate(async ({ put, get_put }) => {
      const r = await fetch(put, { method: "PUT", body: "put by a browser", headers: { "content-type": "text/plain", "x-amz-meta-from": "browser" } });
      const back = await fetch(get_put);
      return { status: r.status, back: await back.text(), from: back.headers.get("x-amz-meta-from") };
    }, setup);
    assert(put.status === 200 && put.back === "put by a browser" && put.from === "browser", `the PUT: ${JSON.stringify(put)}`);

    // Another origin: the browser gets no CORS grant and refuses the page.
    const other = await context.newPage();
    await other.goto(page2.origin);
    const blocked = await other.evaluate(async ({ get }) => {
      try {
        await fetch(get);
        return "read";
      } catch (e) {
        return `blocked: ${e.message}`;
      }
    }, setup);
    assert(blocked.startsWith("blocked"), `a page on an origin the rule does not name read the object: ${blocked}`);
    const preflight = await fetch(`${s3}/web/uploads/hello.txt`, {
      method: "OPTIONS",
      headers: { origin: page2.origin, "access-control-request-method": "GET" },
    });
    assert(preflight.status === 403, `a preflight from another origin answered ${preflight.status}`);
    console.log("s3 browser test: ok");
  } finally {
    await browser.close();
    page1.server.close();
    page2.server.close();
    daemon.kill("SIGKILL");
    killAgentsUnder(dir);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
