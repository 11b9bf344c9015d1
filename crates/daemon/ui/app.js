// The store's web UI: plain JavaScript modules, no build step, no request
// off this machine. Views: files (upload, list, delete), one file's shard
// map, nodes (map and cards, fault-tolerance actions). Live through the
// daemon's server-sent events.

import { drawMap, REGION_CITIES } from "/ui/map.js";

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, "");
    else if (v !== false && v != null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c != null) e.append(c.nodeType ? c : document.createTextNode(String(c)));
  }
  return e;
};

// ---- API ---------------------------------------------------------------

let token = sessionStorage.getItem("cloudshell-store-token");

function headers(extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function askToken() {
  const dialog = $("#token-dialog");
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  token = $("#token-input").value.trim();
  sessionStorage.setItem("cloudshell-store-token", token);
}

async function api(path, options = {}) {
  for (;;) {
    const r = await fetch(path, { ...options, headers: headers(options.headers) });
    if (r.status === 401) {
      await askToken();
      continue;
    }
    if (!r.ok) {
      let message = `${r.status} ${r.statusText}`;
      try {
        message = (await r.json()).error.message;
      } catch {}
      throw new Error(message);
    }
    const type = r.headers.get("content-type") || "";
    return type.includes("json") ? r.json() : r;
  }
}

const filePath = (name) => name.split("/").map(encodeURIComponent).join("/");

// ---- formatting --------------------------------------------------------

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${n.toFixed(1)} ${units[u]}`;
}

function when(secs) {
  if (!secs) return "—";
  const d = new Date(secs * 1000);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function ago(secs) {
  if (!secs) return "—";
  const s = Math.max(0, Math.round(Date.now() / 1000 - secs));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

/** "3 lost regions", or "3 lost regions or 1 lost principal" in a store of several principals. */
function losses(h, more) {
  const lost = (n, what) => `${n} ${more ? "more " : ""}lost ${what}${n === 1 ? "" : "s"}`;
  const regions = lost(h.survives_regions ?? h.survives, "region");
  return h.survives_principals > 0 ? `${regions} or ${lost(h.survives_principals, "principal")}` : regions;
}

function healthBadge(h) {
  if (!h) return el("span", { class: "badge" }, "unknown");
  if (h.repairing) return el("span", { class: "badge repairing" }, "repairing");
  const text =
    h.state === "healthy"
      ? `healthy · survives ${losses(h, false)}`
      : h.state === "degraded"
        ? `degraded · survives ${losses(h, true)}`
        : "unrecoverable";
  return el("span", { class: `badge ${h.state}`, "data-health": h.state }, text);
}

// ---- activity (jobs and results) ---------------------------------------

const watchedJobs = new Map();

function toast(text, kind = "", timeout = 6000) {
  const t = el("div", { class: `toast ${kind}`, role: "status" }, text);
  $("#activity").append(t);
  if (timeout) setTimeout(() => t.remove(), timeout);
  return t;
}

function watchJob(job, describe) {
  const bar = el("progress", { max: job.total || 1, value: job.done || 0 });
  const t = toast("", "", 0);
  t.append(el("div", {}, `${job.kind}…`), bar);
  t.dataset.job = job.id;
  watchedJobs.set(job.id, { toast: t, bar, describe });
}

async function refreshJobs() {
  for (const [id, w] of watchedJobs) {
    const j = await api(`/api/jobs/${id}`);
    w.bar.max = j.total || 1;
    w.bar.value = j.done;
    if (!j.running) {
      watchedJobs.delete(id);
      w.toast.classList.add(j.error ? "failed" : "done");
      w.toast.replaceChildren(j.error ? `${j.kind} failed: ${j.error}` : w.describe(j.result));
      w.toast.dataset.done = "true";
      setTimeout(() => w.toast.remove(), 8000);
    }
  }
}

async function startJob(path, describe) {
  try {
    const job = await api(path, { method: "POST" });
    watchJob(job, describe);
  } catch (e) {
    toast(`${path}: ${e.message}`, "failed");
  }
}

// ---- header summary ----------------------------------------------------

async function refreshSummary() {
  const h = await api("/api/health");
  $("#summary").replaceChildren(
    el("span", { class: `badge ${h.ready ? "connected" : "degraded"}` }, `${h.connected} of ${h.nodes} nodes`),
    el("span", {}, `${h.files} files`),
    h.capacity
      ? el(
          "span",
          {
            "data-capacity": "",
            title: [
              `raw: ${bytes(h.capacity.total.used)} of ${bytes(h.capacity.total.raw)} used over ${h.capacity.total.nodes} nodes`,
              ...(h.capacity.principals.length > 1
                ? h.capacity.principals.map((p) => `${p.principal}: ${bytes(p.usable_free)} free of ${bytes(p.usable)} usable, ${p.nodes} nodes`)
                : []),
            ].join("\n"),
          },
          `${bytes(h.capacity.total.usable_free)} free of ${bytes(h.capacity.total.usable)}`,
        )
      : null,
    el("span", {}, h.index_backup.pending ? "index: backing up…" : h.index_backup.generation ? "index backed up" : ""),
  );
}

// ---- files view --------------------------------------------------------

let files = [];
let sort = { key: "created", dir: -1 };

async function refreshFiles() {
  files = (await api("/api/files")).files;
  renderFiles();
}

function healthRank(f) {
  const h = f.health;
  if (!h) return 0;
  return h.state === "unrecoverable" ? -1 : h.survives;
}

function renderFiles() {
  const q = $("#search").value.trim().toLowerCase();
  const shown = files
    .filter((f) => !q || f.name.toLowerCase().includes(q))
    .sort((a, b) => {
      const va = sort.key === "health" ? healthRank(a) : a[sort.key];
      const vb = sort.key === "health" ? healthRank(b) : b[sort.key];
      return (va < vb ? -1 : va > vb ? 1 : 0) * sort.dir;
    });
  for (const b of document.querySelectorAll(".sort")) {
    b.setAttribute("aria-sort", b.dataset.sort === sort.key ? (sort.dir > 0 ? "ascending" : "descending") : "none");
  }
  $("#files-empty").hidden = files.length > 0;
  $("#file-rows").replaceChildren(
    ...shown.map((f) =>
      el(
        "tr",
        { "data-name": f.name },
        el("td", {}, el("a", { class: "file-link", href: `#/file/${encodeURIComponent(f.name)}` }, f.name)),
        el("td", { class: "num" }, bytes(f.size)),
        el("td", {}, when(f.created)),
        el("td", {}, healthBadge(f.health)),
        el(
          "td",
          { class: "actions" },
          el("a", { class: "button small", href: `/api/files/${filePath(f.name)}`, download: f.name.split("/").pop(), "aria-label": `Download ${f.name}` }, "Download"),
          el("a", { class: "button small", href: `#/file/${encodeURIComponent(f.name)}`, "aria-label": `Shard map of ${f.name}` }, "Shards"),
          el("button", { class: "button small", "aria-label": `Delete ${f.name}`, onclick: () => deleteFile(f.name) }, "Delete"),
        ),
      ),
    ),
  );
}

async function confirm(text, action = "Delete") {
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = action;
  const dialog = $("#confirm");
  dialog.returnValue = "";
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  return dialog.returnValue === "ok";
}

async function deleteFile(name) {
  if (!(await confirm(`Delete ${name} and all its shards? This cannot be undone.`))) return;
  try {
    await api(`/api/files/${filePath(name)}`, { method: "DELETE" });
    toast(`Deleted ${name}`, "done");
    refreshFiles();
  } catch (e) {
    toast(`Delete failed: ${e.message}`, "failed");
  }
}

// ---- uploads -----------------------------------------------------------

function upload(file) {
  const bar = el("progress", { max: file.size || 1, value: 0, "aria-label": `Upload of ${file.name}` });
  const state = el("span", { class: "state" }, "starting");
  const xhr = new XMLHttpRequest();
  const cancel = el("button", { class: "button small", onclick: () => xhr.abort() }, "Cancel");
  const item = el("li", { "data-upload": file.name }, el("span", { class: "name" }, file.name), bar, state, cancel);
  $("#uploads").append(item);
  const started = performance.now();
  xhr.upload.onprogress = (e) => {
    bar.value = e.loaded;
    const secs = (performance.now() - started) / 1000;
    state.textContent = `${bytes(e.loaded)} · ${bytes(e.loaded / Math.max(secs, 0.001))}/s`;
  };
  const finish = (text, ok) => {
    state.textContent = text;
    item.dataset.state = ok ? "done" : "failed";
    cancel.remove();
    if (ok) setTimeout(() => item.remove(), 4000);
  };
  xhr.onload = () => {
    if (xhr.status >= 200 && xhr.status < 300) {
      bar.value = bar.max;
      finish("stored", true);
      refreshFiles();
    } else {
      let message = `${xhr.status}`;
      try {
        message = JSON.parse(xhr.responseText).error.message;
      } catch {}
      finish(`failed: ${message}`, false);
    }
  };
  xhr.onerror = () => finish("failed: network error", false);
  xhr.onabort = () => finish("cancelled", false);
  xhr.open("PUT", `/api/files/${filePath(file.name)}`);
  for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
  xhr.send(file);
}

function setupUploads() {
  const drop = $("#drop");
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    for (const f of e.dataTransfer.files) upload(f);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      $("#picker").click();
    }
  });
  drop.addEventListener("click", () => $("#picker").click());
  $("#picker").addEventListener("change", (e) => {
    for (const f of e.target.files) upload(f);
    e.target.value = "";
  });
}

// ---- one file's shard map ----------------------------------------------

const PAGE = 100;
let fileView = { name: null, offset: 0, region: null };

async function refreshFile() {
  const { name, offset } = fileView;
  let s;
  try {
    s = await api(`/api/stat/${filePath(name)}?offset=${offset}&limit=${PAGE}`);
  } catch (e) {
    $("#file-title").textContent = name;
    $("#file-meta").textContent = e.message;
    return;
  }
  $("#file-title").textContent = s.file.name;
  $("#file-health").replaceChildren(healthBadge(s.health));
  $("#file-download").href = `/api/files/${filePath(s.file.name)}`;
  $("#file-download").download = s.file.name.split("/").pop();
  $("#file-meta").textContent = `${bytes(s.file.size)} · ${s.total_chunks} chunks of ${s.file.k}+${s.file.m} shards · ${s.file.encrypted ? "encrypted" : "not encrypted"} · stored ${when(s.file.created)}`;
  $("#region-bars").replaceChildren(
    ...s.regions.map((r) =>
      el(
        "button",
        {
          class: `region-bar${r.not_ok ? " has-bad" : ""}`,
          "aria-pressed": String(fileView.region === r.node),
          "data-region": r.node,
          onclick: () => {
            fileView.region = fileView.region === r.node ? null : r.node;
            refreshFile();
          },
        },
        el("div", { class: "r" }, r.node),
        el("div", { class: "n" }, `${r.shards} shards${r.not_ok ? ` · ${r.not_ok} not ok` : ""}`),
        el("div", { class: "bar" }, el("span", { style: `width:${(100 * (r.shards - r.not_ok)) / Math.max(r.shards, 1)}%` })),
      ),
    ),
  );
  $("#chunk-grid").replaceChildren(
    ...s.chunks.map((c) =>
      el(
        "div",
        { class: "chunk-row", role: "row" },
        el("span", { class: "label", role: "rowheader" }, `chunk ${c.index}`),
        ...c.shards.map((sh, i) =>
          el(
            "button",
            {
              class: `cell ${sh.state}${fileView.region && fileView.region !== sh.node ? " dim" : ""}`,
              role: "gridcell",
              title: `shard ${i} of chunk ${c.index}: ${sh.node}, ${sh.state}`,
              "aria-label": `shard ${i} of chunk ${c.index} on ${sh.node}: ${sh.state}`,
              "data-chunk": c.index,
              "data-shard": i,
              "data-state": sh.state,
              onclick: () => deleteShard(s.file.name, c.index, i, sh.node),
            },
            sh.node,
          ),
        ),
      ),
    ),
  );
  const pages = Math.ceil(s.total_chunks / PAGE);
  $("#chunk-pager").replaceChildren(
    ...(pages > 1
      ? [
          el("button", { class: "button small", disabled: offset === 0, onclick: () => { fileView.offset -= PAGE; refreshFile(); } }, "Previous"),
          el("span", { class: "muted" }, `chunks ${offset}–${Math.min(offset + PAGE, s.total_chunks) - 1} of ${s.total_chunks}`),
          el("button", { class: "button small", disabled: offset + PAGE >= s.total_chunks, onclick: () => { fileView.offset += PAGE; refreshFile(); } }, "Next"),
        ]
      : []),
  );
}

async function deleteShard(name, chunk, index, node) {
  const ok = await confirm(
    `Delete shard ${index} of chunk ${chunk} from ${node}? The file stays readable from the other shards; repair rebuilds this one.`,
    "Delete shard",
  );
  if (!ok) return;
  try {
    await api(`/api/shards/${encodeURIComponent(node)}/${encodeURIComponent(name)}/${chunk}/${index}`, { method: "DELETE" });
    toast(`Deleted shard ${index} of chunk ${chunk} on ${node}`);
    refreshFile();
  } catch (e) {
    toast(`Delete failed: ${e.message}`, "failed");
  }
}

// ---- nodes view ----------------------------------------------------------

let nodes = [];

async function refreshNodes() {
  nodes = (await api("/api/nodes")).nodes;
  const principals = new Set(nodes.map((n) => n.principal ?? "default"));
  drawMap($("#map"), nodes);
  $("#node-cards").replaceChildren(
    ...nodes.map((n) => {
      const cap = n.store_quota ?? n.quota;
      const pct = cap ? (100 * n.used) / cap : 0;
      const offline = n.state === "offline";
      return el(
        "article",
        { class: "card", "data-node": n.id, "data-state": n.state, "aria-label": `${n.id}: ${n.state}` },
        el(
          "header",
          {},
          el(
            "div",
            {},
            el("h3", {}, n.id),
            el(
              "div",
              { class: "city" },
              [REGION_CITIES[n.region]?.[2], principals.size > 1 ? `principal ${n.principal}` : null].filter(Boolean).join(" · "),
            ),
          ),
          el(
            "span",
            {},
            el("span", { class: `badge ${n.state}` }, n.state),
            n.full ? el("span", { class: "badge full", title: "too little room for a shard: new chunks go to the other nodes" }, "full") : null,
            n.draining ? el("span", { class: "badge draining", title: n.draining }, "draining") : null,
          ),
        ),
        el("div", { class: "capacity", title: `${pct.toFixed(1)}% of the quota` }, el("span", { style: `width:${Math.min(pct, 100)}%` })),
        el(
          "dl",
          {},
          el("dt", {}, "used"), el("dd", {}, `${bytes(n.used)} of ${bytes(n.store_quota ?? n.quota)}`),
          el("dt", {}, "room"), el("dd", {}, bytes(n.room)),
          el("dt", {}, "shards"), el("dd", {}, n.shards.toLocaleString()),
          el("dt", {}, "latency"), el("dd", {}, n.latency_ms != null ? `${n.latency_ms.toFixed(1)} ms` : "—"),
          el("dt", {}, "heartbeat"), el("dd", {}, ago(n.last_heartbeat)),
          el("dt", {}, "NAT"), el("dd", {}, n.nat ?? "—"),
        ),
        n.last_error && n.state !== "connected" ? el("div", { class: "error" }, n.last_error) : null,
        el(
          "div",
          {},
          el(
            "button",
            {
              class: "button small",
              onclick: async () => {
                await api(`/api/nodes/${encodeURIComponent(n.id)}/${offline ? "online" : "offline"}`, { method: "POST" });
                toast(offline ? `${n.id} back in service` : `${n.id} taken offline: nothing is read from or written to it`);
                refreshNodes();
              },
            },
            offline ? "Bring online" : "Take offline",
          ),
          el(
            "button",
            {
              class: "button small quiet-danger",
              "data-remove": n.id,
              disabled: n.draining ? true : null,
              onclick: async () => {
                const ok = await confirm(
                  `Remove ${n.id}? Every shard it holds moves to the other nodes first; then it stops and its environment is suspended.`,
                  "Remove",
                );
                if (!ok) return;
                await startJob(`/api/nodes/${encodeURIComponent(n.id)}/remove`, (r) =>
                  `Removed ${r.nodes.join(", ")}: ${r.shards_moved} shards moved, ${r.shards_rebuilt} rebuilt; ${r.environments.join("; ")}`,
                );
                refreshNodes();
              },
            },
            "Remove",
          ),
        ),
      );
    }),
  );
  // A region any principal the daemon runs lacks (a principal is added
  // with `cloudshell store principal add`).
  const principalOf = (n) => n.principal ?? "default";
  const whose = [...new Set(nodes.map(principalOf))];
  if (whose.length === 0) whose.push("default");
  const have = new Set(nodes.map((n) => `${principalOf(n)}:${n.region}`));
  const select = $("#add-region");
  const current = select.value;
  select.replaceChildren(
    ...whose.flatMap((p) =>
      Object.keys(REGION_CITIES)
        .filter((r) => !have.has(`${p}:${r}`))
        .map((r) => {
          const value = `${p}:${r}`;
          const label = `${whose.length > 1 ? `${p}: ` : ""}${r} (${REGION_CITIES[r][2]})`;
          return el("option", { value, selected: value === current }, label);
        }),
    ),
  );
  $("#act-add").disabled = select.options.length === 0;
}

function setupNodeActions() {
  $("#act-repair").addEventListener("click", () =>
    startJob("/api/repair", (r) => `Repair: ${r.shards_rebuilt} shards rebuilt in ${r.chunks_repaired} chunks of ${r.files} files${r.failed.length ? `; ${r.failed.length} failed` : ""}`),
  );
  $("#file-repair").addEventListener("click", () =>
    startJob("/api/repair", (r) => `Repair: ${r.shards_rebuilt} shards rebuilt in ${r.chunks_repaired} chunks`),
  );
  $("#act-redistribute").addEventListener("click", () =>
    startJob("/api/redistribute", (r) => `Redistribution: ${r.shards_moved} shards moved`),
  );
  $("#act-scrub").addEventListener("click", async () => {
    const before = await api("/api/scrub");
    await api("/api/scrub", { method: "POST" });
    const t = toast("Scrub: agents are hashing their shards…", "", 0);
    scrubWatch = { toast: t, last: before.last_finished };
  });
  $("#act-add").addEventListener("click", async () => {
    const chosen = $("#add-region").value;
    const cut = chosen.lastIndexOf(":");
    const principal = chosen.slice(0, cut);
    const region = chosen.slice(cut + 1);
    const whose = principal === "default" ? "" : ` for ${principal}`;
    try {
      await api("/api/nodes", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ region, principal }) });
      toast(`Adding ${region}${whose}: creating its environment and starting an agent`);
      refreshNodes();
    } catch (e) {
      toast(`Could not add ${region}: ${e.message}`, "failed");
    }
  });
}

let scrubWatch = null;

async function refreshScrub() {
  if (!scrubWatch) return;
  const s = await api("/api/scrub");
  if (!s.running && s.last_finished !== scrubWatch.last) {
    scrubWatch.toast.classList.add("done");
    scrubWatch.toast.textContent = `Scrub: ${s.shards_checked} shards verified in place, ${s.missing} missing, ${s.corrupt} corrupt, ${s.shards_rebuilt} rebuilt, ${s.orphans_deleted} orphans removed`;
    const t = scrubWatch.toast;
    setTimeout(() => t.remove(), 8000);
    scrubWatch = null;
  } else if (s.running) {
    scrubWatch.toast.textContent = `Scrub: ${s.files_done} of ${s.files} files…`;
  }
}

// ---- routing and live updates ------------------------------------------

function route() {
  const hash = location.hash || "#/files";
  let view = "files";
  if (hash.startsWith("#/file/")) {
    view = "file";
    const name = decodeURIComponent(hash.slice("#/file/".length));
    if (name !== fileView.name) fileView = { name, offset: 0, region: null };
  } else if (hash.startsWith("#/nodes")) {
    view = "nodes";
  }
  for (const v of ["files", "file", "nodes"]) $(`#view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll(".top nav a")) {
    a.setAttribute("aria-current", a.dataset.view === (view === "file" ? "files" : view) ? "page" : "false");
  }
  current = view;
  refresh();
}

let current = "files";
let pending = null;

async function refresh() {
  try {
    await Promise.all([
      refreshSummary(),
      current === "files" ? refreshFiles() : current === "file" ? refreshFile() : refreshNodes(),
      refreshJobs(),
      refreshScrub(),
    ]);
    document.body.dataset.loaded = "true";
  } catch (e) {
    console.warn(e);
  }
}

function soon() {
  clearTimeout(pending);
  pending = setTimeout(refresh, 100);
}

// Server-sent events through fetch, so the token header can go with them.
async function live() {
  for (;;) {
    try {
      const r = await fetch("/api/events", { headers: headers() });
      if (r.status === 401) {
        await askToken();
        continue;
      }
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      document.body.dataset.live = "true";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          if (/^event: change/m.test(event)) soon();
        }
      }
    } catch (e) {
      console.warn("live updates interrupted", e);
    }
    document.body.dataset.live = "false";
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function setup() {
  setupUploads();
  setupNodeActions();
  $("#search").addEventListener("input", renderFiles);
  for (const b of document.querySelectorAll(".sort")) {
    b.addEventListener("click", () => {
      sort = { key: b.dataset.sort, dir: sort.key === b.dataset.sort ? -sort.dir : b.dataset.sort === "name" ? 1 : -1 };
      renderFiles();
    });
  }
  window.addEventListener("hashchange", route);
  route();
  live();
}

setup();
