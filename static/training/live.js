// Shared by the training pages' live scripts (reward_runs.js, rounds.js); load it first.
// TrainingLive.refresher: reloads a server-rendered partial into a container, coalescing bursts.
// TrainingLive.subscribe: the project's websocket (/ws/projects/<id>/) with reconnect and
// back-off, handing on the events of one kind. TrainingLive.setBar: moves a <progress> bar.
// Event values are only ever written with textContent / numeric attributes, never as HTML.
(function () {
  "use strict";

  function refresher(url, target, onLoaded) {
    let timer = null;
    return function refresh() {
      // Coalesce bursts of status changes into one reload of the partial.
      if (timer) return;
      timer = setTimeout(async () => {
        timer = null;
        try {
          const response = await fetch(url, {
            headers: { "HX-Request": "true" },
            credentials: "same-origin",
          });
          if (response.ok) {
            target.innerHTML = await response.text(); // our own escaped template, not event data
            if (onLoaded) onLoaded();
          }
        } catch (err) {
          /* the next event tries again */
        }
      }, 300);
    };
  }

  function subscribe(wsPath, live, kind, onEvent, onOpen) {
    let retry = 1000;
    function connect() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      const socket = new WebSocket(scheme + location.host + wsPath);
      socket.onopen = () => {
        retry = 1000;
        live.textContent = "Live updates: on";
        onOpen(); // catch up on anything missed while disconnected
      };
      socket.onmessage = (message) => {
        let event;
        try {
          event = JSON.parse(message.data);
        } catch (err) {
          return;
        }
        if (event && event.kind === kind) onEvent(event);
      };
      socket.onclose = () => {
        live.textContent = "Live updates: reconnecting…";
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 30000);
      };
    }
    connect();
  }

  function setBar(bar, value, total) {
    if (bar && total > 0) {
      bar.max = total;
      bar.value = Math.min(value, total);
    }
  }

  window.TrainingLive = { refresher, subscribe, setBar };
})();
