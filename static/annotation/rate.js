// Rater page: keyboard shortcuts and time on task. Needs htmx (loaded before this); the live
// counters are static/live.js's (see templates/annotation/_progress.html).
(function () {
  "use strict";

  if (!document.getElementById("rater")) return;

  // One keymap table: it drives the handler, the <kbd> hints on the page and the help dialog.
  const KEYMAP = [
    { key: "1", action: "choice:left", help: "A is better (left)" },
    { key: "2", action: "choice:right", help: "B is better (right)" },
    { key: "3", action: "choice:tie", help: "Tie" },
    { key: "4", action: "choice:both_bad", help: "Both bad" },
    { key: "q", action: "strength:1", help: "Slightly better" },
    { key: "w", action: "strength:2", help: "Clearly better" },
    { key: "e", action: "strength:3", help: "Much better" },
    { key: "z", action: "unsafe:left", help: "Flag A as unsafe (toggle)" },
    { key: "x", action: "unsafe:right", help: "Flag B as unsafe (toggle)" },
    { key: "r", action: "rationale", help: "Write why (Esc leaves the box)" },
    { key: "Enter", action: "submit", help: "Submit" },
    { key: "s", action: "skip", help: "Skip (asks for a reason; Enter skips)" },
    { key: "g", action: "guidelines", help: "Guidelines" },
    { key: "?", action: "help", help: "Show or hide these keys" },
  ];
  const BY_KEY = new Map(KEYMAP.map((k) => [k.key, k]));
  const BY_ACTION = new Map(KEYMAP.map((k) => [k.action, k]));

  const $ = (sel) => document.querySelector(sel);
  const form = () => document.getElementById("rate-form");
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

  // --- time on task: from when a pair is shown to its submission --------------------------
  let shown = { comparison: null, at: performance.now() };
  function pairShown() {
    const f = form();
    const id = f ? f.dataset.comparison : null;
    // A pair re-rendered with an error message keeps its clock.
    if (id !== shown.comparison) shown = { comparison: id, at: performance.now() };
    syncStrength();
  }
  document.addEventListener(
    "submit",
    (e) => {
      if (e.target.id === "rate-form") {
        e.target.elements.client_ms.value = String(Math.max(0, Math.round(performance.now() - shown.at)));
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

  const ACTIONS = {
    choice: (v) => check(`input[name=choice][value="${v}"]`),
    strength: (v) => check(`input[name=strength][value="${v}"]`),
    unsafe: (side) => {
      const box = form() && form().elements[`unsafe_${side}`];
      if (box) box.checked = !box.checked;
    },
    rationale: () => {
      const box = form() && form().elements.rationale;
      if (box) box.focus();
    },
    submit: () => form() && form().requestSubmit(),
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

  document.addEventListener("keydown", (e) => {
    if (e.defaultPrevented || e.isComposing) return;
    const target = e.target;
    if (isTyping(target)) {
      if (e.key === "Escape") {
        target.blur();
        if (target.id === "skip-reason") document.getElementById("skip").open = false;
        e.preventDefault();
      } else if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && target.form && target.form.id === "rate-form") {
        e.preventDefault();
        run("submit");
      }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const entry = BY_KEY.get(key);
    if (!entry) return;
    // While a dialog is open only its own toggle works (Esc closes it natively).
    const openDialog = keysDialog.open || guidelinesDialog.open;
    if (openDialog && !(entry.action === "help" || entry.action === "guidelines")) return;
    // Enter on a focused link, button or summary keeps its own meaning.
    if (key === "Enter" && target.closest && target.closest("a, button, summary")) return;
    e.preventDefault();
    run(entry.action);
  });

  // --- htmx wiring ------------------------------------------------------------------------
  document.body.addEventListener("htmx:afterSwap", (e) => {
    const target = e.detail.target;
    if (target.id === "guidelines-body") {
      if (!guidelinesDialog.open) guidelinesDialog.showModal();
    } else if (target.id === "pair") {
      decorate(target);
      pairShown();
      // Focus leaves the removed form: put it on the pair so screen readers follow, keys still work.
      if (!target.contains(document.activeElement)) target.focus({ preventScroll: true });
      const err = target.querySelector(".error");
      if (err) err.scrollIntoView({ block: "nearest" });
    }
  });

  decorate(document);
  fillHelp();
  pairShown();
})();
