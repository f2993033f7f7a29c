// scenetune dashboard: renders the home and experiment pages from JSON payloads.
// Live pages poll the server; the report embeds its payloads. Data is only ever inserted as text.
"use strict";

const POLL_MS = 2000;
const states = new WeakMap();
let lastJson = "";

function stateOf(root) {
  if (!states.has(root)) states.set(root, { sortKey: "val_acc", sortDescending: true, statusFilter: "", selected: new Set() });
  return states.get(root);
}

function element(tag, attributes, children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children || []) node.appendChild(child);
  return node;
}

function format(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  return String(value);
}

function table(columns, rows, options) {
  const head = element("tr", {}, columns.map((column) => {
    const label = column + (options && options.sortKey === column ? (options.sortDescending ? " \u25bc" : " \u25b2") : "");
    return element("th", { text: label, "data-column": column, onclick: options && options.onSort ? () => options.onSort(column) : null });
  }));
  const body = rows.map((row) => element("tr", row.attributes || {}, row.cells.map((cell) =>
    cell instanceof Node ? element("td", {}, [cell]) : element("td", { text: format(cell) }))));
  return element("table", { class: "data" }, [element("thead", {}, [head]), element("tbody", {}, body)]);
}

function part(root, role) {
  return root.querySelector(`[data-role="${role}"]`);
}

function replace(root, role, node) {
  part(root, role).replaceChildren(node);
}

// ---------- home ----------

function renderHome(root, payload, linkTo) {
  const columns = ["experiment", "task", "space", "dataset", "trials", "finished", "running", "stopped", "pruned", "interrupted", "errors", "best val_acc", "test_acc", "test 95% CI", "started"];
  const rows = payload.experiments.map((e) => ({
    attributes: { "data-experiment": e.id },
    cells: [element("a", { href: linkTo(e), text: e.id }), e.task, e.space, e.dataset, e.trials, e.finished,
      e.running, e.stopped, e.pruned, e.interrupted, e.errors, e.best_val_acc, e.best_test_acc,
      e.best_test_95ci ? `${format(e.best_test_95ci[0])}–${format(e.best_test_95ci[1])}` : null, e.started],
  }));
  replace(root, "experiments", rows.length ? table(columns, rows) : element("p", { text: "No experiments yet." }));
  const charts = [];
  const studies = payload.studies.map((study) => {
    const keys = study.rows.length ? Object.keys(study.rows[0]) : [];
    const chart = element("div", { class: "chart", "data-role": "study-accuracy" });
    charts.push([chart, study.rows.filter((row) => row.test_acc !== null)]);
    return element("section", { class: "study" }, [
      element("h3", { text: folderLabel(study) }),
      study.rows.length ? table(keys, study.rows.map((row) => ({ cells: keys.map((k) => row[k]) }))) : element("p", { text: "No comparison yet." }),
      chart,
    ]);
  });
  replace(root, "studies", studies.length ? element("div", {}, studies) : element("p", { text: "No studies yet." }));
  for (const [chart, rows] of charts) drawStudyAccuracy(chart, rows);
  const replications = (payload.replications || []).map((r) => renderReplication(r, linkTo(r, "replication")));
  replace(root, "replications", replications.length ? element("div", {}, replications) : element("p", { text: "No replications yet." }));
}

// A study's or replication's heading: its path under the root, or its name when it is the root itself.
function folderLabel(folder) {
  return folder.id === "." ? folder.name : folder.id;
}

// A replication of the study: its steps, the study's conclusions marked from our numbers, and each of
// the study's tables with our value beside the published one.
function renderReplication(replication, link) {
  const steps = replication.steps.map((step) => `${step.name}: ${step.status}`).join(", ");
  const conclusions = element("ul", { "data-role": "conclusions" }, replication.conclusions.map((c) =>
    element("li", { "data-mark": c.mark }, [element("strong", { text: c.mark }), document.createTextNode(`: ${c.claim} (${c.evidence})`)])));
  const columns = ["row", "metric", "measured", "test_acc", "published", "difference"];
  const tables = Object.entries(replication.tables).map(([name, rows]) => element("div", { class: "replication-table", "data-table": name }, [
    element("h4", { text: name }),
    table(columns, rows.map((row) => ({ cells: columns.map((k) => row[k]) }))),
  ]));
  const request = replication.request;
  return element("section", { class: "replication", "data-replication": replication.id }, [
    element("h3", {}, [link ? element("a", { href: link, text: folderLabel(replication) }) : document.createTextNode(folderLabel(replication))]),
    element("p", { text: `data ${request.data}, protocol ${request.protocol}, carry ${request.carry}; steps: ${steps}` }),
    element("h4", { text: "The study's conclusions" }),
    conclusions,
    ...tables,
  ]);
}

// Test accuracy per approach, with the 95% interval over the test images as error bars: the mean of
// the refit seeds where the study refitted the approach, else its best trial.
function drawStudyAccuracy(node, rows) {
  if (!rows.length) return;
  const present = (value) => value !== undefined && value !== null;
  const points = rows.map((row) => (present(row.refit_test_acc)
    ? { acc: row.refit_test_acc, low: row.refit_low, high: row.refit_high, label: `${row.approach} (refit mean)` }
    : { acc: row.test_acc, low: present(row.test_acc_low) ? row.test_acc_low : row.test_acc,
        high: present(row.test_acc_high) ? row.test_acc_high : row.test_acc, label: row.approach }));
  draw(node, [{ type: "bar", orientation: "h", y: points.map((p) => p.label), x: points.map((p) => p.acc),
    error_x: { type: "data", symmetric: false, array: points.map((p) => p.high - p.acc), arrayminus: points.map((p) => p.acc - p.low) } }],
    { ...layout("test accuracy per approach (bars: 95% interval over the test images)", "test accuracy", ""), xaxis: { range: [0, 1] }, margin: { l: 240, t: 40 } });
}

// ---------- experiment ----------

function sortedTrials(state, trials) {
  const key = state.sortKey;
  const value = (trial) => (key in trial ? trial[key] : trial.params[key]);
  const visible = trials.filter((t) => !state.statusFilter || t.status === state.statusFilter);
  return visible.sort((a, b) => {
    const x = value(a), y = value(b);
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    const order = x < y ? -1 : 1;
    return state.sortDescending ? -order : order;
  });
}

function renderTrialTable(root, payload) {
  const state = stateOf(root);
  const columns = ["select", "trial_id", "status", "val_acc", "test_acc", "epochs", ...payload.params];
  const rows = sortedTrials(state, payload.trials).map((trial) => {
    const box = element("input", { type: "checkbox", "data-trial": trial.trial_id, onchange: (event) => {
      if (event.target.checked) state.selected.add(trial.trial_id); else state.selected.delete(trial.trial_id);
      renderCharts(root, payload);
    } });
    box.checked = state.selected.has(trial.trial_id);
    const status = trial.error ? `${trial.status}: ${trial.error}` : trial.status;
    return { attributes: { "data-trial": trial.trial_id }, cells: [box, trial.trial_id, status, trial.val_acc, trial.test_acc, trial.epochs,
      ...payload.params.map((p) => trial.params[p])] };
  });
  replace(root, "trials", table(columns, rows, { sortKey: state.sortKey, sortDescending: state.sortDescending, onSort: (column) => {
    if (column === "select") return;
    state.sortDescending = state.sortKey === column ? !state.sortDescending : true;
    state.sortKey = column;
    renderTrialTable(root, payload);
  } }));
}

// Losses above the ceiling (a diverged trial: huge, infinite or NaN, sent as null) are drawn at the
// ceiling with an x, so one diverged trial does not flatten every other curve.
function curveTraces(root, payload, metrics, ceiling) {
  const highlighted = (trialId) => isHighlighted(root, trialId);
  const traces = [];
  for (const trial of payload.trials) {
    const history = payload.history[trial.trial_id];
    if (!history) continue;
    for (const metric of metrics) {
      const values = history[metric];
      const clipped = ceiling === null ? values : values.map((v) => (v === null || v > ceiling ? ceiling : v));
      const style = { width: highlighted(trial.trial_id) ? 2 : 1 };
      traces.push({ x: history.epoch, y: clipped, mode: "lines+markers", name: `${trial.trial_id} ${metric}`,
        line: { ...style, dash: metric.startsWith("train") ? "dot" : "solid" }, opacity: highlighted(trial.trial_id) ? 1 : 0.15 });
      const beyond = ceiling === null ? [] : values.map((v, i) => (v === null || v > ceiling ? i : -1)).filter((i) => i >= 0);
      if (beyond.length) {
        traces.push({ x: beyond.map((i) => history.epoch[i]), y: beyond.map(() => ceiling), mode: "markers", showlegend: false,
          name: `${trial.trial_id} ${metric} diverged`, marker: { symbol: "x", size: 11, color: "crimson" } });
      }
    }
  }
  return traces;
}

function isHighlighted(root, trialId) {
  const selected = stateOf(root).selected;
  return selected.size === 0 || selected.has(trialId);
}

function layout(title, xTitle, yTitle) {
  return { title: { text: title }, xaxis: { title: { text: xTitle } }, yaxis: { title: { text: yTitle } }, uirevision: "keep",
    margin: { t: 40, r: 10 }, height: 360, legend: { font: { size: 9 } } };
}

function draw(node, traces, chartLayout) {
  if (!node) return;
  Plotly.react(node, traces, chartLayout, { displaylogo: false, responsive: true });
}

function encode(values) {
  const numeric = values.every((v) => typeof v === "number");
  if (numeric) return { values, labels: null };
  const labels = [...new Set(values.map(String))].sort();
  return { values: values.map((v) => labels.indexOf(String(v))), labels };
}

function renderCharts(root, payload) {
  draw(part(root, "chart-accuracy"), curveTraces(root, payload, ["train_acc", "val_acc"], null), layout("accuracy per epoch", "epoch", "accuracy"));
  const lossLayout = layout(payload.loss_ceiling === null ? "loss per epoch (log)" : "loss per epoch (log; x: diverged, clipped)", "epoch", "loss");
  lossLayout.yaxis.type = "log";
  draw(part(root, "chart-loss"), curveTraces(root, payload, ["train_loss", "val_loss"], payload.loss_ceiling), lossLayout);
  const scored = payload.trials.filter((t) => t.val_acc !== null);
  const container = part(root, "param-charts");
  for (const param of payload.params) {
    const role = "chart-param-" + param;
    if (!part(root, role)) container.appendChild(element("div", { "data-role": role, class: "chart small" }));
    const values = scored.map((t) => t.params[param]);
    const numeric = values.length > 0 && values.every((v) => typeof v === "number");
    const chartLayout = layout(`val_acc against ${param}`, param, "val_acc");
    if (numeric && Math.min(...values) > 0 && Math.max(...values) / Math.min(...values) > payload.log_scale_ratio) chartLayout.xaxis.type = "log";
    draw(part(root, role), [{ x: numeric ? values : values.map(String), y: scored.map((t) => t.val_acc),
      text: scored.map((t) => t.trial_id), mode: "markers", type: "scatter", name: "val_acc",
      marker: { size: scored.map((t) => (isHighlighted(root, t.trial_id) ? 10 : 6)) } }], chartLayout);
  }
  if (payload.params.length >= 2 && scored.length >= 2) {
    const dimensions = payload.params.map((param) => {
      const encoded = encode(scored.map((t) => t.params[param]));
      const dimension = { label: param, values: encoded.values };
      if (encoded.labels) { dimension.tickvals = encoded.labels.map((_, i) => i); dimension.ticktext = encoded.labels; }
      return dimension;
    });
    dimensions.push({ label: "val_acc", values: scored.map((t) => t.val_acc) });
    draw(part(root, "chart-parallel"), [{ type: "parcoords", line: { color: scored.map((t) => t.val_acc), colorscale: "Viridis", showscale: true }, dimensions }],
      { title: { text: "parallel coordinates" }, uirevision: "keep", height: 380 });
  }
  if (payload.importance) {
    const evaluators = Object.keys(payload.importance).filter((k) => k !== "params");
    draw(part(root, "chart-importance"), evaluators.map((name) => ({ type: "bar", orientation: "h", name, y: payload.importance.params, x: payload.importance[name] })),
      layout(`hyperparameter importance for val_acc (from ${payload.importance_trials} scored trials)`, "importance", ""));
  }
}

function renderBest(root, payload) {
  const best = payload.best;
  if (!best) { replace(root, "best", element("p", { text: "No finished trial yet." })); return; }
  replace(root, "best", element("div", {}, [
    element("p", { text: `Best trial ${best.trial_id}: val_acc ${format(best.val_acc)}, test_acc ${format(best.test_acc)}` +
      (best.test_95ci ? ` (95% CI ${format(best.test_95ci[0])}–${format(best.test_95ci[1])} over the test images)` : "") }),
    element("p", { text: "Run it again:" }),
    element("pre", { "data-role": "rerun", text: best.command }),
    ...(best.environment ? [element("p", { "data-role": "environment", text: `It repeats exactly where it ran: ${best.environment}, with the same CPUs per trial.` })] : []),
    element("p", { text: best.checkpoint ? `Checkpoint: ${best.checkpoint}` : "This task keeps no checkpoint (its fitted SVMs are summarised in the table)." }),
  ]));
}

function renderExperiment(root, payload) {
  const s = payload.summary;
  replace(root, "summary", element("div", {}, [
    element("p", { text: `${s.task} · ${s.space} · ${s.dataset} · ${s.trials} trials (${s.finished} finished, ${s.running} running, ${s.stopped} stopped before their last epoch, ${s.interrupted} interrupted, ${s.errors} failed)` }),
    element("p", { "data-role": "classes", text: `classes: ${s.classes.join(", ")}` }),
  ]));
  const filter = part(root, "status-filter");
  filter.onchange = () => { stateOf(root).statusFilter = filter.value; renderTrialTable(root, payload); };
  renderTrialTable(root, payload);
  renderCharts(root, payload);
  renderBest(root, payload);
}

// ---------- live polling ----------

async function poll(url, render) {
  try {
    const response = await fetch(url, { cache: "no-store" });
    if (response.ok) {
      const text = await response.text();
      if (text !== lastJson) {  // unchanged data: leave the page exactly as it is
        lastJson = text;
        render(JSON.parse(text));
      }
    }
  } finally {
    setTimeout(() => poll(url, render), POLL_MS);
  }
}

// An experiment id is a path under the results root: each of its parts is encoded on its own, so
// names with '#', '?' or '%' stay part of the path.
function experimentPath(id) {
  return id.split("/").map(encodeURIComponent).join("/");
}

function startLive() {
  const page = document.body.dataset.page;
  const root = document.querySelector("main");
  if (page === "home") poll("/api/home", (payload) => renderHome(root, payload, (e, kind) => `/${kind || "experiment"}/` + experimentPath(e.id)));
  if (page === "replication") poll("/api/replication/" + experimentPath(document.body.dataset.experiment), (payload) => replace(root, "replication", renderReplication(payload, null)));
  if (page === "experiment") poll("/api/experiment/" + experimentPath(document.body.dataset.experiment), (payload) => renderExperiment(root, payload));
}

function startReport() {
  const payload = JSON.parse(document.getElementById("report-data").textContent);
  renderHome(document.querySelector("[data-section='home']"), payload.home, (e, kind) => (kind ? null : "#section-" + payload.order.indexOf(e.id)));
  payload.order.forEach((id, index) => renderExperiment(document.getElementById("section-" + index), payload.experiments[id]));
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.getElementById("report-data")) startReport(); else startLive();
});
