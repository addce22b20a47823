// A plotly chart that updates in place. Streamlit calls this function on the first mount and again on every rerun
// with new `data`, on the same DOM node (the component is mounted with a stable key): Plotly.react then redraws only
// what changed, and `layout.uirevision` keeps the user's zoom, pan and legend toggles.
// Two bundles, gzipped on disk (Streamlit sends a gzip file as it is, where it would compress plain JavaScript on
// every request): plotly.js's cartesian partial bundle, a third of the size, for the charts whose traces it holds,
// and the full bundle for the others. The cartesian file is absent when the installed plotly carries another
// plotly.js version: the full bundle then draws everything.
const BUNDLES = {
  cartesian: "/app/static/plotly-cartesian.min.js.gz",
  full: "/app/static/plotly.min.js.gz",
};

async function fetchBundle(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error("plotly.js could not be loaded from " + url + " (" + response.status + ")");
  const source = response.body.pipeThrough(new DecompressionStream("gzip"));
  const script = await new Response(source).blob();
  const blobUrl = URL.createObjectURL(new Blob([script], { type: "text/javascript" }));
  await new Promise((resolve, reject) => {
    const element = document.createElement("script");
    element.src = blobUrl;
    element.onload = resolve;
    element.onerror = () => reject(new Error("plotly.js could not be started"));
    document.head.appendChild(element);
  });
  URL.revokeObjectURL(blobUrl);
  return window.Plotly; // each bundle sets window.Plotly: taken right after its script ran (loads run one at a time)
}

// Shared by every chart of the page (this module may be evaluated once per chart).
const loader = (window.__kerascopePlotly = window.__kerascopePlotly || { bundles: {}, queue: Promise.resolve() });

function loadPlotly(kind) {
  if (!loader.bundles[kind]) {
    const loaded = (loader.queue = loader.queue.catch(() => {}).then(() => fetchBundle(BUNDLES[kind])));
    loader.bundles[kind] = loaded.catch((error) => {
      if (kind === "cartesian") return (loader.bundles.cartesian = loadPlotly("full"));
      loader.bundles[kind] = null; // let the next update try again
      throw error;
    });
  }
  return loader.bundles[kind];
}

function toNumber(value) {
  return typeof value === "number" ? value : Date.parse(String(value).replace(" ", "T") + "Z");
}

// Follow mode: once the user zoomed in on x, the window keeps its width and slides with the newest point.
function follow(Plotly, node, state, spec) {
  if (!spec.follow || state.width === null || spec.x_last === null) return;
  const last = toNumber(spec.x_last);
  if (!isFinite(last)) return;
  const range = spec.x_is_time
    ? [new Date(last - state.width).toISOString(), new Date(last).toISOString()]
    : [last - state.width, last];
  state.ignoreRelayout = true;
  Plotly.relayout(node, { "xaxis.range": range }).finally(() => { state.ignoreRelayout = false; });
}

function watchZoom(node, state) {
  node.on("plotly_relayout", (event) => {
    if (state.ignoreRelayout) return;
    if (event["xaxis.autorange"] || event["autosize"]) {
      state.width = null;
    } else if ("xaxis.range[0]" in event && "xaxis.range[1]" in event) {
      state.width = toNumber(event["xaxis.range[1]"]) - toNumber(event["xaxis.range[0]"]);
    } else if (Array.isArray(event["xaxis.range"])) {
      state.width = toNumber(event["xaxis.range"][1]) - toNumber(event["xaxis.range"][0]);
    }
  });
}

// Charts are drawn one per browser task, in the order their data arrived, so the browser paints the first chart
// before it draws the next (drawn in one go, the page shows nothing until the last chart is done). A chart whose data
// changes again before its turn is drawn once, with the newest data.
const drawing = (window.__kerascopeDraws = window.__kerascopeDraws || { pending: new Map(), running: false });

function nextTask() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

async function drawPending() {
  if (drawing.running) return;
  drawing.running = true;
  try {
    while (drawing.pending.size) {
      const [node, spec] = drawing.pending.entries().next().value;
      drawing.pending.delete(node);
      try {
        await draw(node, spec);
      } catch (error) {
        node.textContent = error.message;
      }
      await nextTask();
    }
  } finally {
    drawing.running = false;
  }
}

async function draw(node, spec) {
  const Plotly = await loadPlotly(spec.bundle);
  let state = node.__kerascope;
  if (state && state.Plotly !== Plotly) {
    state.Plotly.purge(node); // drawn by the other bundle: start over with this one
    state = null;
  }
  if (!state) state = node.__kerascope = { Plotly, width: null, ignoreRelayout: false, watched: false };
  await Plotly.react(node, spec.figure.data, spec.figure.layout, spec.config);
  if (!state.watched) {
    watchZoom(node, state);
    state.watched = true;
  }
  node.dataset.revision = String(spec.revision);
  node.dataset.points = String(spec.points);
  follow(Plotly, node, state, spec);
}

export default function (component) {
  const { data, parentElement } = component;
  const node = parentElement.querySelector(".kerascope-chart");
  if (!node || typeof data !== "string" || data === "") {
    // Mounted without a figure: fetch plotly.js while the page script still runs.
    loadPlotly(data === "full" ? "full" : "cartesian").catch(() => {});
    return;
  }
  if (node.__kerascopeData === data) return; // the same figure again: nothing to draw
  node.__kerascopeData = data;
  const spec = JSON.parse(data);
  node.style.height = spec.height + "px";
  drawing.pending.set(node, spec);
  drawPending();
}
