// The run report's page: curves, the aha marker, the sample browser and the held-out prompt follower, all drawn
// from the JSON that analysis.run_report embeds in this file. No library, no network.
"use strict";

const DATA = JSON.parse(document.getElementById("report-data").textContent);
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
const SVG_NS = "http://www.w3.org/2000/svg";
const BEHAVIOURS = Object.entries(DATA.behaviours).map(([name, source]) => [name, new RegExp(source, "gi")]);
const SEARCH_LIMIT = 100; // cards shown for a search over every step; the count says how many matched
const state = { run: 0, split: "train", index: 0, outcome: "all", behaviours: new Set(), query: "" };

const color = (run) => COLORS[run % COLORS.length];
const $ = (id) => document.getElementById(id);

function html(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "html") node.innerHTML = value;
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function number(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString("en-US");
  return Number(value.toPrecision(digits)).toString();
}

// ---- header: runs, notes ------------------------------------------------------------------------------------

function drawHeader() {
  document.title = DATA.title;
  $("title").textContent = DATA.title;
  DATA.runs.forEach((run, i) => {
    const swatch = html("span", { class: "swatch", style: `background:${color(i)}` });
    $("legend").append(html("span", { class: "run", title: run.dir }, swatch, run.name));
  });
  $("legend").append(html("span", { class: "generated" }, `generated ${DATA.generated}`));
  for (const run of DATA.runs) {
    for (const note of run.notes) $("notes").append(html("div", { class: "note" }, `${run.name}: ${note}`));
  }
}

// ---- the aha marker -----------------------------------------------------------------------------------------

function drawAha() {
  const rules = new Set(DATA.runs.map((run) => run.aha.rule));
  $("aha-rule").textContent = [...rules].join("; or, for runs of another length, ") || "no run has the series";
  DATA.runs.forEach((run, i) => {
    const aha = run.aha;
    const box = html("div", { class: `aha-run ${aha.found ? "found" : "missing"}`, "data-run": i });
    const swatch = html("span", { class: "swatch", style: `background:${color(i)}` });
    const verdict = aha.found ? `aha at step ${aha.step.toLocaleString("en-US")}` : "not found";
    box.append(html("div", {}, swatch, " ", html("span", { class: "verdict" }, verdict), ` — ${run.name}: ${aha.reason}`));
    if (aha.stretch) box.append(evidenceTable(aha, run.length_unit));
    $("aha").append(box);
  });
}

function evidenceTable(aha, unit) {
  const head = ["steps", "points", `mean length (${unit})`, "length slope /100 steps", "t", "mean accuracy",
    "accuracy slope /100 steps", "t"];
  const table = html("table", { class: "evidence" });
  table.append(html("tr", {}, ...head.map((h) => html("th", {}, h))));
  const rows = [...aha.windows.map((w, i) => [`window ${i + 1}: `, w]), ["stretch: ", aha.stretch]];
  for (const [name, w] of rows) {
    const cells = [`${name}${w.start}–${w.end}`, w.points, number(w.length_mean), number(w.length_slope * 100),
      number(w.length_t), number(w.accuracy_mean), number(w.accuracy_slope * 100), number(w.accuracy_t)];
    table.append(html("tr", { class: name === "stretch: " ? "stretch" : "" }, ...cells.map((c) => html("td", {}, String(c)))));
  }
  return table;
}

// ---- curves -------------------------------------------------------------------------------------------------

const CHART = { width: 480, height: 236, left: 56, right: 20, top: 10, bottom: 32 };

function ticks(lo, hi, count) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toFixed(10)));
  return out;
}

function tickLabel(value) {
  if (Math.abs(value) >= 10000) return `${number(value / 1000)}k`;
  return number(value);
}

function extent(quantity, runs) {
  let lo = Infinity, hi = -Infinity, x0 = Infinity, x1 = -Infinity;
  for (const { series } of runs) {
    for (const key of ["values", "lo", "hi"]) for (const v of series[key] || []) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    x0 = Math.min(x0, series.steps[0]);
    x1 = Math.max(x1, series.steps[series.steps.length - 1]);
  }
  if (quantity.fraction) { lo = 0; hi = Math.max(1, hi); }
  else if (lo >= 0) lo = 0;
  if (hi === lo) hi = lo + 1;
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  return { lo, hi, x0, x1 };
}

function linePath(xs, ys, sx, sy) {
  let d = "";
  for (let i = 0; i < xs.length; i++) d += `${i ? "L" : "M"}${sx(xs[i]).toFixed(1)},${sy(ys[i]).toFixed(1)}`;
  return d;
}

function bandPath(xs, lo, hi, sx, sy) {
  let d = linePath(xs, hi, sx, sy);
  for (let i = xs.length - 1; i >= 0; i--) d += `L${sx(xs[i]).toFixed(1)},${sy(lo[i]).toFixed(1)}`;
  return `${d}Z`;
}

function drawChart(quantity) {
  const runs = DATA.runs.map((run, index) => ({ index, run, series: run.series[quantity.key] }))
    .filter((r) => r.series && r.series.steps.length);
  const box = html("div", { class: "chart", "data-quantity": quantity.key });
  box.append(html("h3", {}, quantity.title));
  const { width, height, left, right, top, bottom } = CHART;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": quantity.title });
  box.append(root);
  if (!runs.length) return box;
  const { lo, hi, x0, x1 } = extent(quantity, runs);
  const sx = (x) => left + ((x - x0) / (x1 - x0)) * (width - left - right);
  const sy = (y) => height - bottom - ((y - lo) / (hi - lo)) * (height - top - bottom);
  const grid = svg("g", { class: "grid" }), axis = svg("g", { class: "axis" });
  for (const t of ticks(lo, hi, 5)) {
    grid.append(svg("line", { x1: left, x2: width - right, y1: sy(t), y2: sy(t) }));
    const label = svg("text", { x: left - 4, y: sy(t) + 3, "text-anchor": "end" });
    label.textContent = tickLabel(t);
    axis.append(label);
  }
  for (const t of ticks(x0, x1, 6)) {
    const label = svg("text", { x: sx(t), y: height - bottom + 13, "text-anchor": "middle" });
    label.textContent = tickLabel(t);
    axis.append(label);
  }
  const yLabel = svg("text", { x: 10, y: top + (height - top - bottom) / 2, "text-anchor": "middle",
    transform: `rotate(-90 10 ${top + (height - top - bottom) / 2})` });
  yLabel.textContent = quantity.ylabel;
  const xLabel = svg("text", { x: left + (width - left - right) / 2, y: height - 3, "text-anchor": "middle" });
  xLabel.textContent = "step";
  axis.append(yLabel, xLabel, svg("line", { class: "axis-line", x1: left, x2: left, y1: top, y2: height - bottom }),
    svg("line", { class: "axis-line", x1: left, x2: width - right, y1: height - bottom, y2: height - bottom }));
  root.append(grid, axis);
  for (const { index, run, series } of runs) drawSeries(root, index, series, sx, sy);
  for (const { index, run } of runs) {
    if (!run.aha.found || run.aha.step < x0 || run.aha.step > x1) continue;
    root.append(svg("line", { class: "aha", "data-run": index, x1: sx(run.aha.step), x2: sx(run.aha.step), y1: top,
      y2: height - bottom, stroke: color(index), "stroke-dasharray": "5 4", "stroke-width": 1.5 }));
  }
  const cursor = svg("line", { y1: top, y2: height - bottom, stroke: "#888", "stroke-width": 1, visibility: "hidden" });
  root.append(cursor);
  const stepAt = (event) => {
    const rect = root.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * width;
    return x0 + ((x - left) / (width - left - right)) * (x1 - x0);
  };
  root.addEventListener("mousemove", (event) => hover(event, quantity, runs, stepAt(event), cursor, sx));
  root.addEventListener("mouseleave", () => { cursor.setAttribute("visibility", "hidden"); $("tooltip").hidden = true; });
  const clicked = () => { // the run shown in the browser, else the first of this chart's runs that has samples
    const drawn = runs.filter((r) => DATA.runs[r.index].samples).map((r) => r.index);
    return drawn.includes(state.run) ? state.run : drawn.length ? drawn[0] : state.run;
  };
  root.addEventListener("click", (event) => openStep(clicked(), stepAt(event), quantity.split));
  return box;
}

function drawSeries(root, index, series, sx, sy) {
  const c = color(index);
  if (series.dense) {
    if (series.lo) root.append(svg("path", { class: "band", d: bandPath(series.steps, series.lo, series.hi, sx, sy), fill: c, "fill-opacity": 0.15, stroke: "none" }));
    else root.append(svg("path", { class: "raw", d: linePath(series.steps, series.values, sx, sy), fill: "none", stroke: c, "stroke-opacity": 0.25, "stroke-width": 1 }));
    root.append(svg("path", { class: "series", "data-run": index, d: linePath(series.steps, series.smooth, sx, sy), fill: "none", stroke: c, "stroke-width": 2 }));
    return;
  }
  root.append(svg("path", { class: "series", "data-run": index, d: linePath(series.steps, series.values, sx, sy), fill: "none", stroke: c, "stroke-width": 1.5 }));
  series.steps.forEach((step, i) => {
    root.append(svg("circle", { class: "point", "data-run": index, cx: sx(step), cy: sy(series.values[i]), r: 3, fill: c }));
  });
}

function nearest(steps, step) {
  let lo = 0, hi = steps.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (steps[mid] < step) lo = mid + 1; else hi = mid;
  }
  return lo > 0 && Math.abs(steps[lo - 1] - step) <= Math.abs(steps[lo] - step) ? lo - 1 : lo;
}

function hover(event, quantity, runs, step, cursor, sx) {
  const lines = [];
  let at = null;
  for (const { run, series } of runs) {
    const i = nearest(series.steps, step);
    at = at === null ? series.steps[i] : at;
    const shown = series.dense ? series.smooth[i] : series.values[i];
    lines.push(`${run.name}: ${number(shown)} at step ${series.steps[i].toLocaleString("en-US")}`);
  }
  cursor.setAttribute("x1", sx(at));
  cursor.setAttribute("x2", sx(at));
  cursor.setAttribute("visibility", "visible");
  const tip = $("tooltip");
  tip.textContent = `${quantity.title}\n${lines.join("\n")}\nclick: samples of this step`;
  tip.style.left = `${event.clientX + 14}px`;
  tip.style.top = `${event.clientY + 10}px`;
  tip.hidden = false;
}

function drawCharts() {
  for (const quantity of DATA.quantities) {
    if (DATA.runs.some((run) => run.series[quantity.key])) $("charts").append(drawChart(quantity));
  }
}

// ---- sample browser -----------------------------------------------------------------------------------------

function outcome(sample) {
  if (sample.correct) return "correct";
  return sample.answer === null || sample.answer === undefined ? "none" : "wrong";
}

const OUTCOME_TEXT = { correct: "correct", wrong: "wrong answer", none: "no answer" };

function highlight(text, answer, query) {
  const marks = [];
  for (const [name, pattern] of BEHAVIOURS) {
    pattern.lastIndex = 0;
    for (const m of text.matchAll(pattern)) if (m[0]) marks.push([m.index, m.index + m[0].length, name]);
  }
  if (answer) {
    const at = text.lastIndexOf(answer);
    if (at >= 0) marks.push([at, at + answer.length, "answer"]);
  }
  if (query) {
    const lower = text.toLowerCase();
    for (let at = lower.indexOf(query); at >= 0; at = lower.indexOf(query, at + query.length)) {
      marks.push([at, at + query.length, "search"]);
    }
  }
  marks.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
  let out = "", at = 0;
  for (const [start, end, cls] of marks) {
    if (start < at) continue; // overlaps an earlier mark: the first one wins
    out += escapeHtml(text.slice(at, start)) + `<mark class="${cls}">${escapeHtml(text.slice(start, end))}</mark>`;
    at = end;
  }
  return out + escapeHtml(text.slice(at));
}

function sampleCard(sample, query, withStep) {
  const kind = outcome(sample);
  const head = html("div", { class: "head" });
  if (withStep) head.append(html("span", { class: "badge" }, `step ${sample.step.toLocaleString("en-US")}`));
  head.append(html("span", { class: `badge ${kind}` }, OUTCOME_TEXT[kind]));
  if (sample.truncated) head.append(html("span", { class: "badge truncated" }, "truncated"));
  head.append(html("span", {}, `reward ${number(sample.reward)}`));
  const length = sample.tokens ?? sample.chars;
  head.append(html("span", {}, `${number(length)} ${sample.tokens === null || sample.tokens === undefined ? "chars" : "tokens"}`));
  head.append(html("span", {}, `task ${sample.task}`));
  if (sample.reason && kind !== "correct") head.append(html("span", { class: "reason" }, sample.reason));
  for (const name of sample.behaviours) head.append(html("span", { class: `badge ${name}` }, name));
  if (sample.answer !== null && sample.answer !== undefined) head.append(html("span", {}, "answer: ", html("code", {}, sample.answer)));
  const card = html("div", { class: `sample ${kind}`, "data-step": sample.step, "data-outcome": kind });
  const prompt = html("details", {}, html("summary", {}, "prompt"), html("pre", { html: highlight(sample.prompt || "", null, query) }));
  card.append(head, prompt, html("pre", { class: "response", html: highlight(sample.response || "", sample.answer, query) }));
  return card;
}

function keep(sample) {
  if (state.outcome === "truncated" && !sample.truncated) return false;
  if (!["all", "truncated"].includes(state.outcome) && outcome(sample) !== state.outcome) return false;
  for (const name of state.behaviours) if (!sample.behaviours.includes(name)) return false;
  if (!state.query) return true;
  const q = state.query;
  return [sample.response, sample.prompt, sample.answer || ""].some((t) => (t || "").toLowerCase().includes(q));
}

function browser() {
  const run = DATA.runs[state.run];
  return run.samples ? run.samples[state.split] : null;
}

function drawSamples() {
  const split = browser();
  const list = $("samples");
  list.replaceChildren();
  const slider = $("step-slider");
  if (!split || !split.steps.length) {
    slider.max = 0;
    $("step-label").textContent = "";
    const why = DATA.runs[state.run].samples ? `no ${state.split === "eval" ? "held-out evaluation" : "training"} samples in the journal` : DATA.runs[state.run].missing_samples;
    $("step-summary").textContent = why;
    return;
  }
  state.index = Math.min(state.index, split.steps.length - 1);
  slider.max = split.steps.length - 1;
  slider.value = state.index;
  const step = split.steps[state.index];
  $("step-label").textContent = `step ${step.toLocaleString("en-US")} (${state.index + 1} of ${split.steps.length} embedded)`;
  const pool = state.query ? split.steps.flatMap((s) => split.by_step[s]) : split.by_step[step];
  const shown = pool.filter(keep);
  const stats = split.stats[state.index];
  const scope = state.query
    ? `search "${state.query}": ${shown.length} matching sample${shown.length === 1 ? "" : "s"} over all ${split.steps.length} embedded steps` +
      (shown.length > SEARCH_LIMIT ? ` (first ${SEARCH_LIMIT} shown)` : "")
    : `${shown.length} of the ${pool.length} samples embedded for this step shown`;
  const figures = stats ? `; at step ${step.toLocaleString("en-US")}, over all ${stats.n} samples scored: accuracy ${number(stats.accuracy)}, mean reward ${number(stats.reward)}, mean length ${number(stats.length)}` : "";
  $("step-summary").textContent = scope + figures + (split.note ? `. ${split.note}` : "");
  for (const sample of shown.slice(0, SEARCH_LIMIT)) list.append(sampleCard(sample, state.query, Boolean(state.query)));
}

function openStep(run, step, split) {
  state.run = run;
  state.split = DATA.runs[run].samples && DATA.runs[run].samples[split] && DATA.runs[run].samples[split].steps.length ? split : "train";
  $("run").value = String(run);
  $("split").value = state.split;
  const current = browser();
  if (current && current.steps.length) state.index = nearest(current.steps, step);
  drawSamples();
  drawHeldOut();
  $("samples-section").scrollIntoView({ behavior: "instant", block: "start" });
}

function setUpBrowser() {
  DATA.runs.forEach((run, i) => $("run").append(html("option", { value: i }, run.name)));
  for (const [name] of BEHAVIOURS) {
    const box = html("input", { type: "checkbox", value: name, "data-behaviour": name });
    box.addEventListener("change", () => {
      if (box.checked) state.behaviours.add(name); else state.behaviours.delete(name);
      drawSamples();
    });
    $("behaviour-filters").append(html("label", {}, box, ` shows ${name}`));
  }
  $("run").addEventListener("change", () => { state.run = Number($("run").value); state.index = 0; drawSamples(); fillHeldOut(); });
  $("split").addEventListener("change", () => {
    const old = browser(), step = old && old.steps.length ? old.steps[state.index] : 0;
    state.split = $("split").value;
    const split = browser();
    state.index = split && split.steps.length ? nearest(split.steps, step) : 0;
    drawSamples();
  });
  $("step-slider").addEventListener("input", () => { state.index = Number($("step-slider").value); drawSamples(); });
  $("prev").addEventListener("click", () => { state.index = Math.max(0, state.index - 1); drawSamples(); });
  $("next").addEventListener("click", () => { state.index += 1; drawSamples(); });
  $("outcome").addEventListener("change", () => { state.outcome = $("outcome").value; drawSamples(); });
  let typing = null;
  $("search").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { state.query = $("search").value.trim().toLowerCase(); drawSamples(); }, 150);
  });
}

// ---- held-out prompt follower -------------------------------------------------------------------------------

function fillHeldOut() {
  const select = $("held-out-prompt");
  select.replaceChildren();
  const run = DATA.runs[state.run];
  (run.held_out || []).forEach((prompt, i) => select.append(html("option", { value: i }, prompt.title)));
  drawHeldOut();
}

function drawHeldOut() {
  const run = DATA.runs[state.run];
  const box = $("held-out");
  box.replaceChildren();
  if (!run.held_out || !run.held_out.length) {
    box.append(html("p", { class: "missing-data" }, run.missing_held_out || "no held-out prompts in the journal"));
    return;
  }
  const prompt = run.held_out[Number($("held-out-prompt").value) || 0];
  if (run.held_out_note) box.append(html("p", { class: "summary" }, run.held_out_note));
  box.append(html("details", {}, html("summary", {}, "prompt"), html("pre", {}, prompt.prompt)));
  const table = html("table", { class: "held-out" });
  const head = ["step", "outcome", "reward", "answer", "length", "behaviours", "response"];
  table.append(html("tr", {}, ...head.map((h) => html("th", {}, h))));
  for (const record of prompt.records) {
    const kind = outcome(record);
    const response = html("details", {}, html("summary", {}, "show"), html("pre", { html: highlight(record.response || "", record.answer, "") }));
    table.append(html("tr", { class: "evaluation", "data-step": record.step },
      html("td", {}, record.step.toLocaleString("en-US")),
      html("td", {}, html("span", { class: `badge ${kind}` }, OUTCOME_TEXT[kind]), record.truncated ? html("span", { class: "badge truncated" }, "truncated") : ""),
      html("td", {}, number(record.reward)),
      html("td", { class: "text" }, record.answer ?? ""),
      html("td", {}, number(record.tokens ?? record.chars)),
      html("td", { class: "text" }, ...record.behaviours.map((b) => html("span", { class: `badge ${b}` }, b))),
      html("td", { class: "text" }, response)));
  }
  box.append(table);
}

// ---- start ----------------------------------------------------------------------------------------------------

drawHeader();
drawAha();
drawCharts();
setUpBrowser();
drawSamples();
fillHeldOut();
$("held-out-prompt").addEventListener("change", drawHeldOut);
document.body.dataset.ready = "true";
