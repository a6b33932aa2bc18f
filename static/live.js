// The one live client: the project's websocket, and what its events change on the page.
// Loaded on every page (after htmx); it does nothing on a page without a [data-ws] element
// (and, at the end, submits the form of a changed <select data-autosubmit>).
//
// The page declares what it wants with data attributes; no page has its own socket code:
//   data-ws="/ws/projects/<id>/"   the socket to open (one per distinct path on the page).
//   data-live-status               shows the connection: data-state = connecting | on | off |
//                                  denied | closed, and a title that says it in words.
//   data-job="<kind>:<id>"         shows one job (export, reward_run, round). On each of its
//                                  events: [data-job-bar] <progress> gets max = total and
//                                  value = done; [data-job-done], [data-job-total] and
//                                  [data-job-percent] get the numbers as text; then the element
//                                  gets a "live-update" event.
//   data-job-status="<status>"     (on a data-job element) the status it was rendered with.
//   data-job-list="<kind>"         a list of jobs: it gets "live-update" when an event is about
//                                  a job the page does not show yet, or whose status changed.
//   data-live-on="<kind> <kind>"   gets "live-update" on every event of those kinds.
// "live-update" does not bubble; its detail is the event. Templates turn it into a refresh of a
// server-rendered partial with hx-get + hx-trigger="live-update", so all HTML comes from the
// server and event values are only ever written as text or numbers. Bursts of events become one
// "live-update" per element every REFRESH_MS. Every (re)connection also sends "live-update" to
// the lists, [data-live-on] and unlisted [data-job] elements: to catch up on missed events.
//
// Job events share one shape (core/jobs.py `job_payload`):
//   {"kind", "id", "status", "done", "total", "percent", "cancel_requested", "error", ...}.
//
// The socket reconnects with back-off after a drop, but never after the server refused it
// (close code 4403: not allowed) or closed it normally (1000).
(function () {
  "use strict";

  const REFRESH_MS = 250;
  const RETRY_FIRST_MS = 1000;
  const RETRY_MAX_MS = 30000;
  const CLOSE_NORMAL = 1000;
  const CLOSE_DENIED = 4403;
  const STATE_TITLES = {
    connecting: "Live updates: connecting",
    on: "Live updates: on",
    off: "Live updates: reconnecting",
    denied: "Live updates: not allowed",
    closed: "Live updates: off",
  };

  // --- "live-update" events, at most one per element per REFRESH_MS -------------------------
  // Keyed by selector, not element: a partial swapped in meanwhile gets the event instead.
  const pending = new Map();

  function dispatch(selector, detail) {
    document.querySelectorAll(selector).forEach((el) => {
      el.dispatchEvent(new CustomEvent("live-update", { bubbles: false, detail: detail }));
    });
  }

  function refreshSoon(selector, detail) {
    const waiting = pending.get(selector);
    if (waiting) {
      waiting.detail = detail;
      return;
    }
    const entry = { detail: detail };
    pending.set(selector, entry);
    setTimeout(() => {
      pending.delete(selector);
      dispatch(selector, entry.detail);
    }, REFRESH_MS);
  }

  function attr(name, value) {
    return "[" + name + '="' + CSS.escape(String(value)) + '"]';
  }

  // --- what an event changes ----------------------------------------------------------------
  function setNumber(scope, selector, value) {
    if (typeof value !== "number" || !isFinite(value)) return;
    scope.querySelectorAll(selector).forEach((el) => {
      el.textContent = String(value);
    });
  }

  function within(el, selector) {
    const found = Array.from(el.querySelectorAll(selector));
    if (el.matches(selector)) found.unshift(el);
    return found;
  }

  function showProgress(el, event) {
    const done = Number(event.done) || 0;
    const total = Number(event.total) || 0;
    within(el, "progress[data-job-bar]").forEach((bar) => {
      if (event.status === "succeeded") {
        bar.max = total || 1;
        bar.value = total || 1;
      } else if (total > 0) {
        bar.max = total;
        bar.value = Math.min(done, total);
      }
    });
    setNumber(el, "[data-job-done]", event.done);
    setNumber(el, "[data-job-total]", event.total);
    setNumber(el, "[data-job-percent]", event.percent);
  }

  function onJobEvent(event) {
    const selector = attr("data-job", event.kind + ":" + event.id);
    const shown = document.querySelectorAll(selector);
    let listChanged = shown.length === 0;
    shown.forEach((el) => {
      showProgress(el, event);
      const status = el.dataset.jobStatus;
      if (status !== undefined && status !== String(event.status)) listChanged = true;
    });
    if (shown.length) refreshSoon(selector, event);
    if (listChanged) refreshSoon(attr("data-job-list", event.kind), event);
  }

  function onEvent(event) {
    if (!event || typeof event.kind !== "string") return;
    refreshSoon('[data-live-on~="' + CSS.escape(event.kind) + '"]', event);
    if (event.id !== undefined && event.id !== null) onJobEvent(event);
  }

  function catchUp() {
    const detail = { kind: "connected" };
    refreshSoon("[data-job-list]", detail);
    refreshSoon("[data-live-on]", detail);
    document.querySelectorAll("[data-job]").forEach((el) => {
      if (!el.closest("[data-job-list]")) refreshSoon(attr("data-job", el.dataset.job), detail);
    });
  }

  // --- the sockets --------------------------------------------------------------------------
  function showState(state) {
    document.querySelectorAll("[data-live-status]").forEach((el) => {
      el.dataset.state = state;
      el.title = STATE_TITLES[state];
    });
  }

  function connect(path) {
    let retry = RETRY_FIRST_MS;
    function open() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      let socket;
      try {
        socket = new WebSocket(scheme + location.host + path);
      } catch (err) {
        showState("closed"); // a malformed path: nothing to retry
        return;
      }
      socket.addEventListener("open", () => {
        retry = RETRY_FIRST_MS;
        showState("on");
        catchUp();
      });
      socket.addEventListener("message", (message) => {
        let event;
        try {
          event = JSON.parse(message.data);
        } catch (err) {
          return;
        }
        onEvent(event);
      });
      socket.addEventListener("close", (e) => {
        if (e.code === CLOSE_DENIED) return showState("denied");
        if (e.code === CLOSE_NORMAL) return showState("closed");
        showState("off");
        // Jitter, so that the pages a restarted server dropped do not all come back at once.
        setTimeout(open, retry * (0.75 + Math.random() / 2));
        retry = Math.min(retry * 2, RETRY_MAX_MS);
      });
    }
    open();
  }

  const paths = new Set(Array.from(document.querySelectorAll("[data-ws]"), (el) => el.dataset.ws));
  if (paths.size) showState("connecting");
  paths.forEach(connect);
})();

// A <select data-autosubmit> submits its form when it changes (the CSP allows no inline
// onchange="..." handler, so pages declare it and this does it).
document.addEventListener("change", (event) => {
  const el = event.target;
  if (el instanceof HTMLSelectElement && el.hasAttribute("data-autosubmit") && el.form) el.form.requestSubmit();
});
