// A plotly chart that updates in place. Streamlit calls this function on the first mount and again on every rerun
// with new `data`, on the same DOM node (the component is mounted with a stable key): Plotly.react then redraws only
// what changed, and `layout.uirevision` keeps the user's zoom, pan and legend toggles.
// Gzipped on disk: Streamlit sends a gzip file as it is, where it would compress plain JavaScript on every request.
const PLOTLY_URL = "/app/static/plotly.min.js.gz";

async function fetchPlotly() {
  const response = await fetch(PLOTLY_URL);
  if (!response.ok) throw new Error("plotly.js could not be loaded from " + PLOTLY_URL + " (" + response.status + ")");
  const source = response.body.pipeThrough(new DecompressionStream("gzip"));
  const script = await new Response(source).blob();
  const url = URL.createObjectURL(new Blob([script], { type: "text/javascript" }));
  await new Promise((resolve, reject) => {
    const element = document.createElement("script");
    element.src = url;
    element.onload = resolve;
    element.onerror = () => reject(new Error("plotly.js could not be started"));
    document.head.appendChild(element);
  });
  URL.revokeObjectURL(url);
  return window.Plotly;
}

function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window.__kerascopePlotly) {
    window.__kerascopePlotly = fetchPlotly().catch((error) => {
      window.__kerascopePlotly = null; // let the next update try again
      throw error;
    });
  }
  return window.__kerascopePlotly;
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

export default function (component) {
  const { data, parentElement } = component;
  const node = parentElement.querySelector(".kerascope-chart");
  if (!node || typeof data !== "string" || data === "") {
    loadPlotly().catch(() => {}); // mounted without a figure: fetch plotly.js while the page script still runs
    return;
  }
  const spec = JSON.parse(data);
  node.style.height = spec.height + "px";
  loadPlotly()
    .then(async (Plotly) => {
      const state = (node.__kerascope = node.__kerascope || { width: null, ignoreRelayout: false, watched: false });
      await Plotly.react(node, spec.figure.data, spec.figure.layout, spec.config);
      if (!state.watched) {
        watchZoom(node, state);
        state.watched = true;
      }
      node.dataset.revision = String(spec.revision);
      node.dataset.points = String(spec.points);
      follow(Plotly, node, state, spec);
    })
    .catch((error) => {
      node.textContent = error.message;
    });
}
