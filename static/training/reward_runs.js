// Live progress for the reward-model runs table.
// Listens on the project's websocket group (/ws/projects/<id>/) for {"kind": "reward_run", ...}
// events: updates the run's progress bar, step count and loss, draws the live loss curve, and
// reloads the table (a server-rendered partial) when a run changes status or appears.
// Event values are only ever written with textContent / numeric attributes, never as HTML.
(function () {
  "use strict";
  const root = document.getElementById("reward-models");
  if (!root) return;
  const runs = document.getElementById("runs");
  const live = document.getElementById("live-status");
  const curves = new Map(); // run id -> [[step, loss], ...] seen live
  const refresh = TrainingLive.refresher(root.dataset.partial, runs, () => curves.clear());

  function field(row, name) {
    return row.querySelector('[data-field="' + name + '"]');
  }

  function drawCurve(row, points) {
    const line = field(row, "curve");
    if (!line || points.length < 2) return;
    const w = 240, h = 60, pad = 2;
    const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const sx = (w - 2 * pad) / (x1 - x0 || 1), sy = (h - 2 * pad) / (y1 - y0 || 1);
    line.setAttribute(
      "points",
      points.map(([x, y]) => (pad + (x - x0) * sx).toFixed(1) + "," + (h - pad - (y - y0) * sy).toFixed(1)).join(" ")
    );
  }

  function update(event) {
    const id = Number(event.run_id);
    const row = document.getElementById("run-" + id);
    if (!row || row.dataset.status !== String(event.status) || (event.active && !row.querySelector(".badge.active"))) {
      refresh();
      if (!row) return;
    }
    if (event.phase !== "reward") return;
    const step = Number(event.step) || 0, total = Number(event.total) || 0;
    TrainingLive.setBar(field(row, "bar"), step, total);
    if (field(row, "step")) field(row, "step").textContent = String(step);
    if (field(row, "total")) field(row, "total").textContent = String(total);
    const loss = typeof event.loss === "number" && isFinite(event.loss) ? event.loss : null;
    if (loss !== null && field(row, "loss")) field(row, "loss").textContent = loss.toFixed(4);
    if (loss !== null && step > 0) {
      const points = curves.get(id) || [];
      if (!points.length || points[points.length - 1][0] < step) points.push([step, loss]);
      curves.set(id, points);
      drawCurve(row, points);
    }
  }

  TrainingLive.subscribe(root.dataset.ws, live, "reward_run", update, refresh);
})();
