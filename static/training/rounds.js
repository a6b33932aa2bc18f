// Live progress for the rounds list and one round's page.
// Listens on the project's websocket group (/ws/projects/<id>/) for
// {"kind": "round", round_id, state, step, phase, done, total} events: moves the step's
// progress bar at once and reloads the server-rendered partial when the state changes.
// Event values are only written with textContent / numeric attributes, never as HTML.
(function () {
  "use strict";
  const root = document.getElementById("round-page") || document.getElementById("rounds-page");
  if (!root) return;
  const onRound = root.id === "round-page";
  const target = document.getElementById(onRound ? "round-body" : "rounds");
  const live = document.getElementById("live-status");
  const roundId = onRound ? Number(root.dataset.round) : null;
  const refresh = TrainingLive.refresher(root.dataset.partial, target);

  function currentState() {
    if (onRound) {
      const el = document.getElementById("round-state");
      return el ? el.dataset.state : null;
    }
    return null;
  }

  function update(event) {
    const id = Number(event.round_id);
    if (!onRound) {
      const row = document.getElementById("round-" + id);
      if (!row || row.dataset.state !== String(event.state)) refresh();
      return;
    }
    if (id !== roundId) return;
    if (currentState() !== String(event.state)) {
      refresh();
      return;
    }
    const row = document.getElementById("step-" + String(event.step));
    if (!row) return;
    const done = Number(event.done) || 0, total = Number(event.total) || 0;
    TrainingLive.setBar(row.querySelector('[data-field="bar"]'), done, total);
    const doneEl = row.querySelector('[data-field="done"]');
    const totalEl = row.querySelector('[data-field="total"]');
    const phaseEl = row.querySelector('[data-field="phase"]');
    if (doneEl) doneEl.textContent = String(done);
    if (totalEl) totalEl.textContent = String(total);
    if (phaseEl && typeof event.phase === "string") phaseEl.textContent = event.phase;
  }

  TrainingLive.subscribe(root.dataset.ws, live, "round", update, refresh);
})();
