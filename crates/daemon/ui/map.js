// A world map drawn here, with no map data fetched: coarse continent
// outlines (longitude, latitude) filled as a grid of dots, and one marker
// per region sized by the shards it holds and coloured by its state.

/** CloudShell regions: longitude, latitude, city. */
export const REGION_CITIES = {
  "us-east-1": [-77.5, 39.0, "N. Virginia"],
  "us-east-2": [-83.0, 40.0, "Ohio"],
  "us-west-1": [-122.0, 37.4, "N. California"],
  "us-west-2": [-120.5, 45.8, "Oregon"],
  "ca-central-1": [-73.6, 45.5, "Montreal"],
  "ca-west-1": [-114.1, 51.0, "Calgary"],
  "sa-east-1": [-46.6, -23.5, "São Paulo"],
  "eu-west-1": [-6.3, 53.3, "Ireland"],
  "eu-west-2": [-0.1, 51.5, "London"],
  "eu-west-3": [2.35, 48.85, "Paris"],
  "eu-central-1": [8.7, 50.1, "Frankfurt"],
  "eu-central-2": [8.5, 47.4, "Zurich"],
  "eu-north-1": [18.1, 59.3, "Stockholm"],
  "eu-south-1": [9.2, 45.5, "Milan"],
  "eu-south-2": [-0.9, 41.6, "Spain"],
  "me-south-1": [50.6, 26.1, "Bahrain"],
  "me-central-1": [54.4, 24.5, "UAE"],
  "il-central-1": [34.8, 32.1, "Tel Aviv"],
  "af-south-1": [18.4, -33.9, "Cape Town"],
  "ap-south-1": [72.9, 19.1, "Mumbai"],
  "ap-south-2": [78.5, 17.4, "Hyderabad"],
  "ap-southeast-1": [103.8, 1.35, "Singapore"],
  "ap-southeast-2": [151.2, -33.9, "Sydney"],
  "ap-southeast-3": [106.8, -6.2, "Jakarta"],
  "ap-southeast-4": [145.0, -37.8, "Melbourne"],
  "ap-northeast-1": [139.7, 35.7, "Tokyo"],
  "ap-northeast-2": [127.0, 37.5, "Seoul"],
  "ap-northeast-3": [135.5, 34.7, "Osaka"],
  "ap-east-1": [114.2, 22.3, "Hong Kong"],
};

const LAND = [
  // North America
  [[-168, 66], [-156, 71], [-130, 70], [-110, 73], [-85, 70], [-80, 63], [-95, 58], [-82, 52], [-66, 58], [-61, 47], [-70, 43], [-76, 35], [-81, 31], [-80, 25], [-83, 29], [-90, 30], [-97, 27], [-97, 21], [-92, 18], [-88, 15], [-83, 9], [-79, 8], [-86, 13], [-94, 16], [-105, 20], [-110, 23], [-112, 31], [-117, 33], [-124, 40], [-124, 48], [-133, 55], [-150, 60], [-160, 58], [-166, 62]],
  // Greenland
  [[-73, 78], [-60, 82], [-30, 83], [-20, 77], [-22, 70], [-40, 65], [-50, 62], [-55, 68], [-65, 76]],
  // South America
  [[-80, 9], [-72, 12], [-62, 10], [-50, 2], [-35, -5], [-39, -14], [-41, -22], [-48, -26], [-58, -35], [-62, -40], [-65, -46], [-70, -53], [-74, -50], [-73, -40], [-71, -30], [-70, -18], [-76, -13], [-81, -5], [-80, 1]],
  // Europe
  [[-10, 36], [-9, 43], [-2, 44], [-5, 48], [2, 51], [5, 53], [8, 57], [5, 62], [12, 67], [20, 70], [30, 71], [40, 68], [32, 65], [40, 64], [60, 68], [60, 55], [50, 47], [40, 45], [30, 45], [28, 41], [23, 36], [20, 40], [13, 45], [16, 41], [12, 38], [8, 44], [3, 43], [-2, 37]],
  // Great Britain and Ireland
  [[-5, 50], [1, 51], [0, 53], [-2, 56], [-3, 58], [-6, 57], [-5, 54], [-3, 53]],
  [[-10, 52], [-6, 52], [-6, 55], [-9, 55]],
  // Africa
  [[-17, 21], [-10, 30], [-6, 35], [10, 37], [11, 33], [20, 31], [32, 31], [35, 28], [43, 12], [51, 12], [42, -2], [40, -15], [35, -24], [32, -29], [26, -34], [18, -35], [14, -23], [12, -6], [9, 4], [-8, 4], [-16, 11]],
  [[44, -25], [47, -25], [50, -15], [48, -13]],
  // Asia
  [[28, 41], [36, 36], [35, 32], [43, 13], [53, 17], [58, 23], [57, 26], [62, 25], [67, 24], [73, 20], [77, 8], [80, 13], [88, 22], [92, 21], [98, 16], [100, 7], [103, 1], [104, 10], [109, 12], [106, 20], [110, 21], [117, 24], [122, 31], [121, 39], [127, 36], [129, 35], [129, 42], [135, 44], [141, 48], [140, 53], [155, 59], [162, 61], [170, 65], [180, 68], [180, 72], [140, 73], [110, 77], [80, 73], [60, 68], [60, 55], [50, 47], [40, 45], [30, 45]],
  // Japan, Borneo, Sumatra, Java
  [[130, 31], [132, 34], [136, 34], [140, 35], [141, 39], [140, 41], [142, 43], [145, 44], [141, 45], [140, 41], [139, 38], [136, 36], [132, 35]],
  [[109, 1], [117, 7], [119, 1], [116, -4], [110, -3]],
  [[95, 5], [106, -6], [104, -5], [97, 2]],
  [[105, -6], [115, -8], [114, -9], [105, -7]],
  // Australia, New Zealand
  [[114, -22], [115, -34], [123, -34], [131, -31], [137, -35], [140, -38], [147, -38], [150, -37], [153, -32], [153, -25], [146, -19], [142, -11], [136, -12], [131, -12], [126, -14], [122, -18]],
  [[172, -35], [178, -38], [174, -42], [168, -46], [171, -42]],
];

function inside([x, y], polygon) {
  let hit = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i];
    const [xj, yj] = polygon[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
  }
  return hit;
}

const TOP = 80;
const BOTTOM = -56;
const STEP = 3;
let dots = null;

function landDots() {
  if (dots) return dots;
  dots = [];
  for (let lat = TOP; lat >= BOTTOM; lat -= STEP) {
    for (let lon = -180; lon < 180; lon += STEP) {
      if (LAND.some((p) => inside([lon, lat], p))) dots.push([lon, lat]);
    }
  }
  return dots;
}

const project = ([lon, lat]) => [lon + 180, TOP - lat];

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

/** Draws the map with `nodes` (the API's node list) into `container`. */
/** The worst first: a region's marker shows its worst node. */
const WORST_FIRST = ["lost", "degraded", "offline", "provisioning", "bootstrapping", "connected"];

/**
 * One marker per region: several principals' nodes in one region share its
 * fate, so they share its marker (shards summed, the worst state shown).
 */
function byRegion(nodes) {
  const regions = new Map();
  for (const n of nodes) {
    const r = regions.get(n.region) ?? { id: n.region, region: n.region, shards: 0, states: [], nodes: 0 };
    r.shards += n.shards;
    r.states.push(n.state);
    r.nodes += 1;
    regions.set(n.region, r);
  }
  return [...regions.values()].map((r) => ({
    ...r,
    state: WORST_FIRST.find((s) => r.states.includes(s)) ?? r.states[0],
  }));
}

export function drawMap(container, allNodes) {
  const nodes = byRegion(allNodes);
  const root = svg("svg", { viewBox: `0 0 360 ${TOP - BOTTOM}`, "aria-hidden": "true" });
  const land = svg("g", { class: "land" });
  for (const d of landDots()) {
    const [x, y] = project(d);
    land.append(svg("circle", { cx: x, cy: y, r: 1.05 }));
  }
  root.append(land);
  const most = Math.max(1, ...nodes.map((n) => n.shards));
  const radius = (n) => 1.8 + 2.2 * Math.sqrt(n.shards / most);
  const shown = nodes.filter((n) => REGION_CITIES[n.region]);
  // Labels go right, left, above or below their marker, whichever first
  // overlaps no marker and no label placed before (regions cluster in
  // Europe and the eastern US).
  const placed = shown.map((n) => {
    const [x, y] = project(REGION_CITIES[n.region]);
    const r = radius(n);
    return { x: x - r, y: y - r, w: 2 * r, h: 2 * r };
  });
  const overlaps = (b) => placed.some((p) => b.x < p.x + p.w && p.x < b.x + b.w && b.y < p.y + p.h && p.y < b.y + b.h);
  for (const n of shown) {
    const where = REGION_CITIES[n.region];
    const [x, y] = project(where);
    const g = svg("g", { class: `node ${n.state}`, "data-node": n.id });
    const r = radius(n);
    g.append(svg("circle", { cx: x, cy: y, r }));
    const w = n.id.length * 2.45;
    const h = 5;
    const options = [
      { x: x + r + 1, y: y - h / 2 },
      { x: x - r - 1 - w, y: y - h / 2 },
      { x: x - w / 2, y: y - r - 0.8 - h },
      { x: x - w / 2, y: y + r + 0.8 },
      { x: x + r + 1, y: y + r },
      { x: x + r + 1, y: y - r - h },
      { x: x - r - 1 - w, y: y + r },
      { x: x - r - 1 - w, y: y - r - h },
    ];
    const box = options.find((o) => !overlaps({ ...o, w, h })) ?? options[0];
    placed.push({ ...box, w, h });
    const label = svg("text", { x: box.x, y: box.y + h * 0.8 });
    label.textContent = n.id;
    g.append(label);
    const title = svg("title", {});
    title.textContent = `${n.id} (${where[2]}): ${n.nodes > 1 ? `${n.nodes} nodes, worst ` : ""}${n.state}, ${n.shards} shards`;
    g.append(title);
    root.append(g);
  }
  container.replaceChildren(root);
  container.setAttribute(
    "aria-label",
    `Where the data lives: ${nodes.map((n) => `${n.id} ${n.state} with ${n.shards} shards`).join("; ")}`,
  );
}
