// Rater page: keyboard shortcuts, time on task, the submit's busy and error states, the unsafe
// category menu and the responses' scroll boxes. Needs htmx (loaded before this); the live
// counters are static/live.js's (see templates/annotation/_progress.html).
(function () {
  "use strict";

  if (!document.getElementById("rater")) return;

  // Submit keys are ignored for this long after a new pair is shown: an Enter pressed (or held)
  // for the pair before must not land on one the rater has not read.
  const SUBMIT_GUARD_MS = 600;

  // One keymap table: it drives the handler, the <kbd> hints on the page and the help dialog.
  // Entries with `help` only (no action) are listed in the help and handled elsewhere.
  const KEYMAP = [
    { key: "1", action: "choice:left", help: "A is better (left)" },
    { key: "2", action: "choice:right", help: "B is better (right)" },
    { key: "3", action: "choice:tie", help: "Tie" },
    { key: "4", action: "choice:both_bad", help: "Both bad" },
    { key: "q", action: "strength:1", help: "Slightly better" },
    { key: "w", action: "strength:2", help: "Clearly better" },
    { key: "e", action: "strength:3", help: "Much better" },
    { key: "z", action: "unsafe:left", help: "Flag A as unsafe: then 1–7 picks why, 0 unflags, Esc keeps it" },
    { key: "x", action: "unsafe:right", help: "Flag B as unsafe: then 1–7 picks why, 0 unflags, Esc keeps it" },
    { key: "j", action: "scroll:1", help: "Scroll both responses down" },
    { key: "k", action: "scroll:-1", help: "Scroll both responses up" },
    { key: "r", action: "rationale", help: "Write why (Esc leaves the box)" },
    { key: "Enter", action: "submit", help: "Submit" },
    { key: "Ctrl+Enter", help: "Submit from the “Why?” box" },
    { key: "u", action: "undo", help: "Change your last vote (for a short while after it)" },
    { key: "Esc", help: "Leave a text box; back from changing a vote" },
    { key: "s", action: "skip", help: "Skip (asks for a reason; Enter skips)" },
    { key: "g", action: "guidelines", help: "Guidelines" },
    { key: "?", action: "help", help: "Show or hide these keys" },
  ];
  const BOUND = KEYMAP.filter((k) => k.action);
  const BY_KEY = new Map(BOUND.map((k) => [k.key, k]));
  const BY_ACTION = new Map(BOUND.map((k) => [k.action, k]));

  const $ = (sel) => document.querySelector(sel);
  const form = () => document.getElementById("rate-form");
  const pairBox = document.getElementById("pair");
  const keysDialog = document.getElementById("keys-dialog");
  const guidelinesDialog = document.getElementById("guidelines-dialog");

  function kbd(text) {
    const el = document.createElement("kbd");
    el.textContent = text;
    return el;
  }

  function decorate(scope) {
    scope.querySelectorAll("[data-action]").forEach((el) => {
      const entry = BY_ACTION.get(el.dataset.action);
      if (entry && !el.querySelector(":scope > kbd")) {
        el.append(" ", kbd(entry.key));
        if (!el.hasAttribute("aria-keyshortcuts")) el.setAttribute("aria-keyshortcuts", entry.key);
      }
    });
  }

  function fillHelp() {
    const body = document.getElementById("keys-table");
    body.replaceChildren(
      ...KEYMAP.map((k) => {
        const tr = document.createElement("tr");
        const th = document.createElement("th");
        th.scope = "row";
        th.append(kbd(k.key));
        const td = document.createElement("td");
        td.textContent = k.help;
        tr.append(th, td);
        return tr;
      }),
    );
  }

  // --- the pair on screen: time on task, the submit guard ------------------------------------
  // Time on task runs from when a pair is first shown to its submission; a pair shown again
  // (re-rendered with an error, or after changing the last vote) keeps its clock.
  const firstShown = new Map();
  let shownKey = null;
  let guardUntil = 0;

  function pairShown(swapped) {
    const f = form();
    const id = f ? f.dataset.comparison : null;
    const key = f ? id + (f.dataset.revise ? ":revise" : "") : null;
    if (id && !firstShown.has(id)) firstShown.set(id, performance.now());
    if (key !== shownKey) {
      shownKey = key;
      if (swapped) guardUntil = performance.now() + SUBMIT_GUARD_MS;
    }
    syncStrength();
    scrollHints();
    undoExpires();
  }
  document.addEventListener(
    "submit",
    (e) => {
      if (e.target.id === "rate-form") {
        const started = firstShown.get(e.target.dataset.comparison) ?? performance.now();
        e.target.elements.client_ms.value = String(Math.max(0, Math.round(performance.now() - started)));
      }
    },
    true, // capture: before htmx reads the form's values
  );

  // Strength only applies to A/B: disable it for tie and both bad.
  function syncStrength() {
    const f = form();
    if (!f) return;
    const choice = f.querySelector("input[name=choice]:checked");
    const fieldset = f.querySelector("fieldset.strength");
    fieldset.disabled = !!choice && (choice.value === "tie" || choice.value === "both_bad");
  }
  document.addEventListener("change", (e) => {
    if (e.target.name === "choice") syncStrength();
    // A category picked with the mouse flags the response too (as the server reads it).
    const side = /^unsafe_(left|right)_category$/.exec(e.target.name || "");
    if (side && e.target.value) form().elements[`unsafe_${side[1]}`].checked = true;
  });

  // The "change your last vote" control goes when its window has passed.
  function undoExpires() {
    const undo = document.getElementById("undo");
    if (!undo) return;
    const line = undo.closest(".undo-line") || undo;
    setTimeout(() => line.remove(), Number(undo.dataset.leftMs) || 0);
  }

  // --- the responses' scroll boxes ------------------------------------------------------------
  // Each response scrolls in its own box; its header says how far down it is. j / k scroll both
  // together, to the same fraction of their length, so the two stay at matching positions.
  const boxes = () => Array.from(document.querySelectorAll("#pair [data-scroll-box]"));
  const range = (box) => Math.max(0, box.scrollHeight - box.clientHeight);

  function scrollHint(box) {
    const hint = box.closest(".response").querySelector("[data-scroll-hint]");
    if (!hint) return;
    const r = range(box);
    if (r < 2) {
      hint.textContent = "";
      return;
    }
    const percent = Math.min(100, Math.round((100 * box.scrollTop) / r));
    hint.textContent = percent >= 100 ? "100% · end" : `${percent}% read · j/k scroll`;
  }

  function scrollHints() {
    boxes().forEach(scrollHint);
  }
  document.addEventListener(
    "scroll",
    (e) => {
      if (e.target instanceof Element && e.target.matches("[data-scroll-box]")) scrollHint(e.target);
    },
    true, // scroll events do not bubble
  );

  function scrollBoth(direction) {
    const all = boxes().filter((box) => range(box) > 1);
    if (!all.length) return;
    const lead = all.reduce((a, b) => (range(b) > range(a) ? b : a));
    const top = Math.min(range(lead), Math.max(0, lead.scrollTop + direction * 0.8 * lead.clientHeight));
    const fraction = top / range(lead);
    all.forEach((box) => {
      box.scrollTop = box === lead ? top : Math.round(fraction * range(box));
      scrollHint(box);
    });
  }

  // --- the unsafe category menu ---------------------------------------------------------------
  // z / x flag the response and open its menu; a digit picks the category (0 clears the flag),
  // Esc closes it as it is. The menu lists the categories the server knows, in its order.
  let menu = null;

  function openMenu(side) {
    closeMenu();
    const f = form();
    const el = document.getElementById(`unsafe-menu-${side}`);
    if (!f || !el) return;
    f.elements[`unsafe_${side}`].checked = true;
    const current = f.elements[`unsafe_${side}_category`].value;
    el.querySelectorAll("[data-category]").forEach((item) => {
      item.setAttribute("aria-checked", String(item.dataset.category === current && current !== ""));
    });
    el.hidden = false;
    menu = el;
  }

  function closeMenu() {
    if (menu) menu.hidden = true;
    menu = null;
  }

  function pickCategory(el, category) {
    const side = el.dataset.side;
    const f = form();
    f.elements[`unsafe_${side}`].checked = category !== "";
    const select = f.elements[`unsafe_${side}_category`];
    select.value = category;
    select.dispatchEvent(new Event("change", { bubbles: true }));
    closeMenu();
  }

  function menuKey(e, key) {
    const item = menu.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (item) pickCategory(menu, item.dataset.category);
    else if (key === "Escape" || key === "Enter" || key === "z" || key === "x") closeMenu();
    else {
      closeMenu();
      return false; // not the menu's: the key does what it always does
    }
    e.preventDefault();
    return true;
  }

  document.addEventListener("click", (e) => {
    const item = e.target.closest && e.target.closest(".unsafe-menu [data-category]");
    if (item) pickCategory(item.closest(".unsafe-menu"), item.dataset.category);
  });

  // --- actions ----------------------------------------------------------------------------
  function check(selector) {
    const input = form() && form().querySelector(selector);
    if (!input || input.disabled || input.closest("fieldset:disabled")) return;
    input.checked = true;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }

  function toggleHelp() {
    if (keysDialog.open) keysDialog.close();
    else {
      if (guidelinesDialog.open) guidelinesDialog.close();
      keysDialog.showModal();
    }
  }

  function openGuidelines() {
    if (guidelinesDialog.open) guidelinesDialog.close();
    else $("#guidelines-link").click(); // htmx loads them, then the dialog opens (below)
  }

  function openSkip() {
    const details = document.getElementById("skip");
    if (!details) return;
    details.open = true;
    const input = document.getElementById("skip-reason");
    input.focus();
    input.select();
  }

  function submit() {
    const f = form();
    if (!f || f.getAttribute("aria-busy") === "true") return;
    if (performance.now() < guardUntil) return; // the pair has only just appeared
    f.requestSubmit();
  }

  function clickIfThere(id) {
    const el = document.getElementById(id);
    if (el) el.click();
  }

  const ACTIONS = {
    choice: (v) => check(`input[name=choice][value="${v}"]`),
    strength: (v) => check(`input[name=strength][value="${v}"]`),
    unsafe: openMenu,
    scroll: (direction) => scrollBoth(Number(direction)),
    rationale: () => {
      const box = form() && form().elements.rationale;
      if (box) box.focus();
    },
    submit: submit,
    undo: () => clickIfThere("undo"),
    skip: openSkip,
    guidelines: openGuidelines,
    help: toggleHelp,
  };

  function run(action) {
    const [name, arg] = action.split(":");
    ACTIONS[name](arg);
  }

  // Typing in a text field turns the shortcuts off (radio buttons and checkboxes are not typing).
  const NOT_TYPING = new Set(["checkbox", "radio", "button", "submit", "reset"]);
  function isTyping(el) {
    if (!el || el === document.body) return false;
    if (el.isContentEditable) return true;
    const tag = el.tagName;
    return tag === "TEXTAREA" || tag === "SELECT" || (tag === "INPUT" && !NOT_TYPING.has(el.type));
  }

  function typingKey(e, target) {
    if (e.key === "Escape") {
      target.blur();
      if (target.id === "skip-reason") document.getElementById("skip").open = false;
      e.preventDefault();
    } else if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && target.form && target.form.id === "rate-form") {
      e.preventDefault();
      if (!e.repeat) submit();
    }
  }

  document.addEventListener("keydown", (e) => {
    if (e.defaultPrevented || e.isComposing) return;
    const target = e.target;
    if (isTyping(target)) return typingKey(e, target);
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const openDialog = keysDialog.open || guidelinesDialog.open;
    if (menu && !openDialog && menuKey(e, key)) return;
    if (key === "Escape" && !openDialog && document.getElementById("revise-cancel")) {
      e.preventDefault();
      return clickIfThere("revise-cancel");
    }
    const entry = BY_KEY.get(key);
    if (!entry) return;
    // While a dialog is open only its own toggle works (Esc closes it natively).
    if (openDialog && !(entry.action === "help" || entry.action === "guidelines")) return;
    // Enter on a focused link, button or summary keeps its own meaning.
    if (key === "Enter" && target.closest && target.closest("a, button, summary")) return;
    e.preventDefault();
    if (key === "Enter" && e.repeat) return; // a held Enter submits once
    run(entry.action);
  });

  // --- the submit in flight, and when it fails ----------------------------------------------
  // htmx swaps what the server answers (the next pair, or this one with its error: 4xx). A 5xx
  // or no answer at all swaps nothing: say so here, keep the choices, let Enter try again.
  const RATE_FORMS = new Set(["rate-form", "skip-form"]);

  function busy(f, on) {
    if (on) f.setAttribute("aria-busy", "true");
    else f.removeAttribute("aria-busy");
    f.classList.toggle("busy", on);
    f.querySelectorAll("button[type=submit]").forEach((b) => {
      b.disabled = on;
    });
  }

  function showFailure(message) {
    const box = document.getElementById("submit-error");
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
  }

  document.body.addEventListener("htmx:beforeRequest", (e) => {
    const f = e.detail.elt;
    if (!RATE_FORMS.has(f.id)) return;
    busy(f, true);
    const box = document.getElementById("submit-error");
    if (box) box.hidden = true;
    // The last answer's banner ("Saved.") is about the pair before: it goes now.
    pairBox.querySelectorAll(":scope > .notice, :scope > #form-error").forEach((el) => el.remove());
  });
  document.body.addEventListener("htmx:afterRequest", (e) => {
    if (RATE_FORMS.has(e.detail.elt.id)) busy(e.detail.elt, false);
  });
  document.body.addEventListener("htmx:responseError", (e) => {
    const status = e.detail.xhr.status;
    if (!RATE_FORMS.has(e.detail.elt.id) || status < 500) return; // 4xx: the server's message is shown
    showFailure(
      `Your vote was not saved: the server had an error (${status}). ` +
        "Your choices are kept: press Enter to try again.",
    );
  });
  for (const name of ["htmx:sendError", "htmx:timeout"]) {
    document.body.addEventListener(name, (e) => {
      if (!RATE_FORMS.has(e.detail.elt.id)) return;
      showFailure(
        "Your vote was not saved: no connection to the server. " +
          "Your choices are kept: press Enter to try again once you are back online.",
      );
    });
  }

  // --- htmx wiring ------------------------------------------------------------------------
  document.body.addEventListener("htmx:afterSwap", (e) => {
    const target = e.detail.target;
    if (target.id === "guidelines-body") {
      if (!guidelinesDialog.open) guidelinesDialog.showModal();
    } else if (target.id === "pair") {
      closeMenu();
      decorate(target);
      pairShown(true);
      // Focus leaves the removed form (htmx would put it in the new pair's box of the same id,
      // where the next keys would be typed): put it on the pair, so screen readers follow and
      // the keys vote. A skip refused for want of a reason keeps its box.
      const active = document.activeElement;
      const keepSkip = active && active.id === "skip-reason" && target.querySelector("#skip-error");
      if (!target.contains(active) || (isTyping(active) && !keepSkip)) target.focus({ preventScroll: true });
      const err = target.querySelector(".error:not([hidden])");
      if (err) err.scrollIntoView({ block: "nearest" });
    }
  });

  // Back or Forward onto this page from the browser's memory: fetch the pair held now.
  window.addEventListener("pageshow", (e) => {
    if (e.persisted) window.location.reload();
  });

  decorate(document);
  fillHelp();
  pairShown(false);
})();
