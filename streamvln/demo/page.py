"""The demo's single page: static HTML + a little JS (no build step) that polls /state.json.

Kept as a Python string so it ships with the package without package-data configuration.
"""

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>streamvln live demo</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1rem; background: #f6f6f4; color: #222; }
  #notice { background: #fff3cd; border: 1px solid #e0c060; padding: .4rem .8rem; margin-bottom: .6rem; }
  #error { background: #f8d7da; border: 1px solid #d08080; padding: .4rem .8rem; margin-bottom: .6rem; }
  #notice:empty, #error:empty { display: none; }
  .row { display: flex; gap: 1rem; flex-wrap: wrap; align-items: flex-start; }
  figure { margin: 0; } figcaption { font-size: .8rem; color: #666; }
  img { background: #ddd; image-rendering: pixelated; }
  #rgb, #depth { width: 320px; } #map { max-width: 480px; max-height: 480px; }
  table { border-collapse: collapse; font-size: .85rem; } td, th { padding: .15rem .5rem; border-bottom: 1px solid #ddd; text-align: right; }
  #instruction { font-size: 1.1rem; margin: .4rem 0 .8rem; max-width: 70rem; }
  .mono { font-family: ui-monospace, monospace; }
</style>
</head>
<body>
<h2>streamvln live demo</h2>
<div id="notice"></div>
<div id="error"></div>
<div>episode <b id="episode">-</b> &middot; step <b id="step">0</b> &middot; frame <b id="frame">0</b>
  &middot; distance to goal <b id="distance">-</b> m &middot; episodes done <b id="done">0</b></div>
<div id="instruction">waiting for the first frame...</div>
<div class="row">
  <figure><img id="rgb" alt="rgb"><figcaption>RGB</figcaption></figure>
  <figure><img id="depth" alt="depth"><figcaption>depth</figcaption></figure>
  <figure><img id="map" alt="top-down map"><figcaption>top-down: reference (blue), agent path (red), goal (green)</figcaption></figure>
</div>
<div class="row">
  <div><h3>model calls</h3><table id="calls"><thead><tr><th>step</th><th>actions</th><th>round trip ms</th><th>model ms</th><th>server ms</th><th>notes</th></tr></thead><tbody></tbody></table></div>
  <div><h3>finished episodes</h3><table id="finished"><thead><tr><th>episode</th><th>SR</th><th>SPL</th><th>NE</th><th>nDTW</th><th>steps</th></tr></thead><tbody></tbody></table>
  <p id="summary" class="mono"></p></div>
</div>
<script>
"use strict";
let shownFrame = -1;
const $ = (id) => document.getElementById(id);
const fmt = (v, d = 2) => (v === null || v === undefined) ? "-" : Number(v).toFixed(d);
function cells(values) { return "<tr>" + values.map((v) => "<td>" + String(v).replace(/</g, "&lt;") + "</td>").join("") + "</tr>"; }

function showImages(frame) {
  const rgb = $("rgb");
  rgb.onload = () => { $("frame").textContent = frame; fetch("/seen?frame=" + frame).catch(() => {}); };
  rgb.src = "/rgb.jpg?frame=" + frame;
  $("depth").src = "/depth.jpg?frame=" + frame;
  $("map").src = "/map.jpg?frame=" + frame;
}

function render(state) {
  $("notice").textContent = state.notice || "";
  $("error").textContent = state.error || "";
  $("episode").textContent = state.episode ?? "-";
  $("step").textContent = state.step;
  $("distance").textContent = fmt(state.distance_to_goal);
  $("done").textContent = state.episodes_done || 0;
  $("instruction").textContent = state.instruction || "";
  $("calls").tBodies[0].innerHTML = (state.calls || []).slice().reverse().map((c) =>
    cells([c.step, c.actions.join(" "), fmt(c.round_trip_ms), fmt(c.model_ms), fmt(c.server_ms), c.notes.join("; ")])).join("");
  $("finished").tBodies[0].innerHTML = (state.finished || []).slice().reverse().map((m) =>
    cells([m.episode, fmt(m.SR, 0), fmt(m.SPL), fmt(m.NE), fmt(m.nDTW), m.steps])).join("");
  const s = state.summary || {};
  $("summary").textContent = Object.keys(s).length ? "mean over finished: " + Object.entries(s).map(([k, v]) => k + " " + fmt(v)).join(", ") : "";
  if (state.frame !== shownFrame && state.frame > 0) { shownFrame = state.frame; showImages(state.frame); }
}

async function poll() {
  try {
    const response = await fetch("/state.json", { cache: "no-store" });
    render(await response.json());
  } catch (error) {
    $("error").textContent = "lost contact with the demo server: " + error;
  }
  setTimeout(poll, 200);
}
poll();
</script>
</body>
</html>
"""
