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
  let refreshTimer = null;
  let retry = 1000;

  function refresh() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      try {
        const response = await fetch(root.dataset.partial, {
          headers: { "HX-Request": "true" },
          credentials: "same-origin",
        });
        if (response.ok) target.innerHTML = await response.text(); // our own escaped template
      } catch (err) {
        /* the next event tries again */
      }
    }, 300);
  }

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
    const bar = row.querySelector('[data-field="bar"]');
    if (bar && total > 0) {
      bar.max = total;
      bar.value = Math.min(done, total);
    }
    const doneEl = row.querySelector('[data-field="done"]');
    const totalEl = row.querySelector('[data-field="total"]');
    const phaseEl = row.querySelector('[data-field="phase"]');
    if (doneEl) doneEl.textContent = String(done);
    if (totalEl) totalEl.textContent = String(total);
    if (phaseEl && typeof event.phase === "string") phaseEl.textContent = event.phase;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + root.dataset.ws);
    socket.onopen = () => {
      retry = 1000;
      live.textContent = "Live updates: on";
      refresh();
    };
    socket.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch (err) {
        return;
      }
      if (event && event.kind === "round") update(event);
    };
    socket.onclose = () => {
      live.textContent = "Live updates: reconnecting…";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }
  connect();
})();
