"use strict";
// Loan-officer form: posts the application as JSON to the API and renders the answer.
// Everything from the server is inserted with textContent, never as HTML (the one exception:
// a decline notice the service renders is printed from an inert frame, never shown inline).
// With tokens on, the officer signs in here: officer id and token are kept in sessionStorage
// (this tab, until it closes or "Sign out") and sent as `Authorization: Bearer`; the page
// itself never holds a token.
(function () {
  const form = document.getElementById("applicant-form");
  const result = document.getElementById("result");
  const submit = document.getElementById("submit");
  const signin = document.getElementById("signin");
  const signinForm = document.getElementById("signin-form");
  const signinWhy = document.getElementById("signin-why");
  const signinError = document.getElementById("signin-error");
  const signinButton = document.getElementById("sign-in");
  const officerInput = document.getElementById("s-officer");
  const tokenField = document.getElementById("field-s-token");
  const tokenInput = document.getElementById("s-token");
  const sessionBar = document.getElementById("session");
  const sessionOfficer = document.getElementById("session-officer");
  // Relative to the page, so the form works wherever the service is mounted:
  // /ui/ -> ../classify, /ui -> classify; both resolve to <prefix>/classify.
  const base = location.pathname.endsWith("/") ? "../" : "";
  const endpoint = new URL(base + form.dataset.endpoint, location.href);
  const probeUrl = new URL(base + form.dataset.probe, location.href);
  const decisionsUrl = new URL(base + form.dataset.decisions + "/", location.href);
  const BUSY = new Set([429, 503, 504]);
  const KEYS = { token: "credit-risk.access-token", officer: "credit-risk.officer-id" };
  let authOn = false; // set by the probe at start, and by any 401
  let inFlight = false; // the button stays focusable while busy, so it is not `disabled`

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // --- the session: officer id and token, this tab only ---------------------------------

  function stored(key) {
    try {
      return sessionStorage.getItem(key) || "";
    } catch (err) {
      return ""; // storage refused (private mode): the officer signs in again on each load
    }
  }

  function keep(values) {
    for (const [key, value] of Object.entries(values)) {
      try {
        if (value) sessionStorage.setItem(key, value);
        else sessionStorage.removeItem(key);
      } catch (err) {
        /* nothing kept: sign-in lasts until the page is left */
      }
    }
  }

  function authHeaders() {
    const token = stored(KEYS.token);
    return token ? { Authorization: "Bearer " + token } : {};
  }

  function signedIn() {
    return Boolean(stored(KEYS.officer)) && (!authOn || Boolean(stored(KEYS.token)));
  }

  function render() {
    const inside = signedIn();
    signin.hidden = inside;
    sessionBar.hidden = !inside;
    sessionOfficer.textContent = stored(KEYS.officer);
    tokenField.hidden = !authOn;
    tokenInput.disabled = !authOn;
    signinButton.textContent = authOn ? "Sign in" : "Continue";
    form.hidden = authOn && !inside;
    if (!inside && !signinWhy.dataset.reason) {
      signinWhy.textContent = authOn
        ? "The scoring service asks for sign-in: your officer id and the access token you were " +
          "given. Both are kept for this browser tab only, until you sign out or close it."
        : "Enter your officer id to have it recorded with each decision you ask for " +
          "(this service runs without access tokens).";
    }
  }

  function needSignIn(reason) {
    authOn = true;
    keep({ [KEYS.token]: "" });
    signinWhy.dataset.reason = "401";
    signinWhy.textContent = reason;
    render();
    officerInput.value = officerInput.value || stored(KEYS.officer);
    (officerInput.value ? tokenInput : officerInput).focus();
  }

  async function probe(token) {
    // A cheap request behind the same auth as scoring: 401 means auth is on (or the token
    // was refused). 0: the service could not be reached.
    try {
      const response = await fetch(probeUrl, {
        method: "POST",
        headers: Object.assign(
          { "Content-Type": "application/json", Accept: "application/json" },
          token ? { Authorization: "Bearer " + token } : {}
        ),
        body: "{}",
      });
      return response.status;
    } catch (err) {
      return 0;
    }
  }

  async function onSignIn(event) {
    event.preventDefault();
    signinError.hidden = true;
    const officer = officerInput.value.trim();
    officerInput.value = officer;
    const token = tokenInput.value.trim();
    let problem = "";
    if (!officer || !officerInput.checkValidity()) {
      problem = "Enter your officer id: 1 to 64 letters, digits or . _ : - @.";
    } else if (authOn && !token) {
      problem = "Enter your access token.";
    }
    if (!problem && authOn) {
      signinButton.setAttribute("aria-disabled", "true");
      const status = await probe(token);
      signinButton.removeAttribute("aria-disabled");
      if (status === 401 || status === 403) problem = "This access token was refused.";
      else if (status === 0 || status >= 500) {
        problem = "The scoring service could not check the token now; try again shortly.";
      }
    }
    if (problem) {
      signinError.textContent = problem;
      signinError.hidden = false;
      (problem.startsWith("Enter your officer") ? officerInput : tokenInput).focus();
      return;
    }
    keep({ [KEYS.officer]: officer, [KEYS.token]: authOn ? token : "" });
    tokenInput.value = "";
    delete signinWhy.dataset.reason;
    render();
    const first = form.querySelector("input, select");
    if (first) first.focus();
  }

  function signOut() {
    keep({ [KEYS.officer]: "", [KEYS.token]: "" });
    officerInput.value = "";
    tokenInput.value = "";
    delete signinWhy.dataset.reason;
    show("");
    render();
    officerInput.focus();
  }

  // --- the application --------------------------------------------------------------------

  function controls() {
    return Array.from(form.elements).filter((input) => input.name);
  }

  function labelOf(name) {
    const label = document.querySelector('label[for="f-' + CSS.escape(name) + '"]');
    return label ? label.textContent : name;
  }

  function payload() {
    const body = {};
    for (const input of controls()) {
      const raw = input.value.trim();
      if (raw === "") continue; // the API then names the missing field
      if (input.dataset.kind === "integer" || input.dataset.kind === "number") {
        const number = Number(raw);
        body[input.name] = Number.isFinite(number) ? number : raw;
      } else {
        body[input.name] = raw;
      }
    }
    const officer = stored(KEYS.officer);
    if (officer) body.officer_id = officer;
    return body;
  }

  function localProblems() {
    // What the page can tell before asking: a field not chosen, out of its bounds or pattern.
    const detail = [];
    for (const input of controls()) {
      if (input.validity.valid) continue;
      let msg = input.validationMessage || "Invalid value.";
      if (input.validity.valueMissing) {
        msg = input.tagName === "SELECT" ? "Choose one of the options." : "Enter a value.";
      } else if (input.validity.patternMismatch && input.title) {
        msg = input.title;
      }
      detail.push({ loc: [input.name], msg: msg });
    }
    return detail;
  }

  function loadExample() {
    clearErrors();
    for (const input of controls()) {
      if (input.dataset.example !== undefined) input.value = input.dataset.example;
    }
    show("");
  }

  function clearErrors() {
    for (const input of controls()) {
      input.removeAttribute("aria-invalid");
      input.setAttribute("aria-describedby", "hint-" + input.name);
      const error = document.getElementById("err-" + input.name);
      error.textContent = "";
      error.hidden = true;
    }
  }

  function fieldError(name, message) {
    const input = form.elements.namedItem(name);
    const error = document.getElementById("err-" + name);
    if (!input || !error || !input.name) return false;
    error.textContent = error.textContent ? error.textContent + " " + message : message;
    error.hidden = false;
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", "err-" + name + " hint-" + name);
    return true;
  }

  function show(kind, ...children) {
    result.className = "result" + (kind ? " " + kind : "");
    result.replaceChildren(...children);
  }

  function percent(p) {
    return (100 * p).toLocaleString(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) + " %";
  }

  function points(p) {
    const n = Math.round(p);
    return (n < 0 ? "\u2212" + -n : String(n)) + (Math.abs(n) === 1 ? " point" : " points");
  }

  function showDecision(d, officer) {
    const word = d.decision === "approve" ? "Approve" : "Decline";
    const facts = el("dl", { class: "facts" },
      el("div", {}, el("dt", {}, "Score"), el("dd", { id: "result-score" }, d.score)),
      el("div", {}, el("dt", {}, "Risk band"), el("dd", { id: "result-band" }, d.risk_band)),
      el("div", {}, el("dt", {}, "Probability of default"),
        el("dd", { id: "result-probability" }, percent(d.probability_of_default))),
      el("div", {}, el("dt", {}, "Decline above"), el("dd", {}, percent(d.threshold))));
    let reasons;
    if (d.reason_codes.length) {
      reasons = el("ol", { class: "reasons", id: "result-reasons" },
        ...d.reason_codes.map((r) => el("li", { "data-feature": r.feature },
          r.description + " ",
          el("span", { class: "points" },
            "(" + r.code + ", " + points(r.points) + ")"))));
    } else {
      reasons = el("p", { id: "result-reasons" }, "No adverse reasons to report.");
    }
    const parts = [
      el("p", { class: "print-only print-title" }, "Credit decision"),
      el("h2", {}, "Decision"),
      el("div", { class: "decision " + d.decision, id: "result-decision",
        "data-decision": d.decision }, word),
      facts,
      el("h3", {}, d.reason_codes.length ? "Principal reasons" : "Reasons"),
      reasons,
    ];
    if (d.recourse) {
      parts.push(el("h3", {}, "What would be approved"),
        el("p", { id: "result-recourse" }, d.recourse.description));
    }
    const ids = el("dl", { class: "ids" },
      el("div", {}, el("dt", {}, "Decision reference"),
        el("dd", {}, el("code", { id: "result-reference" }, d.decision_id))));
    if (d.application_id) {
      ids.append(el("div", {}, el("dt", {}, "Application reference"),
        el("dd", {}, el("code", { id: "result-application" }, d.application_id))));
    }
    if (officer) {
      ids.append(el("div", {}, el("dt", {}, "Officer"),
        el("dd", { id: "result-officer" }, officer)));
    }
    parts.push(ids,
      el("p", { class: "reference" },
        "Keep the decision reference with the application to find this decision again."),
      el("p", { class: "meta" }, "Model " + d.model_version + " · decided " +
        new Date().toLocaleString()));
    if (d.decision === "decline") {
      const button = el("button", { type: "button", id: "print-notice", class: "secondary" },
        "Print notice");
      button.addEventListener("click", () => printNotice(d.decision_id));
      parts.push(el("div", { class: "actions no-print" }, button),
        el("p", { id: "print-status", class: "meta no-print", role: "status" }));
    }
    show("", ...parts);
    result.scrollIntoView({ block: "nearest" }); // announced by aria-live; focus stays put
  }

  async function printNotice(decisionId) {
    // The service's notice, fetched with the token and printed from a frame. A 404 means the
    // store no longer holds the decision (purged): this page's own result is no notice, so
    // nothing is printed in its place.
    const status = document.getElementById("print-status");
    status.textContent = "";
    let response = null;
    try {
      response = await fetch(new URL(encodeURIComponent(decisionId) + "/notice", decisionsUrl), {
        headers: Object.assign({ Accept: "text/html" }, authHeaders()),
      });
    } catch (err) {
      status.textContent = "The service could not be reached for the notice; try again.";
      return;
    }
    if (response.status === 401 || response.status === 403) {
      needSignIn("Sign in again to print the notice (the token was refused or has expired).");
      return;
    }
    if (response.status === 404) {
      status.textContent = "The service holds no record of this decision any more, so it has " +
        "no notice for it.";
      return;
    }
    if (!response.ok) {
      status.textContent = "The notice could not be produced (HTTP " + response.status +
        "); try again.";
      return;
    }
    // The frame inherits this page's CSP, which refuses inline <style>: its rules are taken
    // out of the text and adopted as a constructed style sheet (CSSOM), which the CSP allows;
    // scripts are dropped (a notice needs none, and the CSP would refuse them anyway). The
    // frame is sandboxed without scripts: this page may style and print it (same origin,
    // modals), but nothing in the notice can run.
    const css = [];
    const html = (await response.text())
      .replace(/<script\b[^>]*>[\s\S]*?<\/script>/gi, "")
      .replace(/<style\b[^>]*>([\s\S]*?)<\/style>/gi, (_, rules) => {
        css.push(rules);
        return "";
      });
    for (const old of document.querySelectorAll("iframe.print-frame")) old.remove();
    const frame = el("iframe", { class: "print-frame", title: "Notice for printing",
      "aria-hidden": "true", tabindex: "-1", sandbox: "allow-same-origin allow-modals" });
    frame.addEventListener("load", () => {
      const view = frame.contentWindow;
      const sheet = new view.CSSStyleSheet();
      sheet.replaceSync(css.join("\n"));
      frame.contentDocument.adoptedStyleSheets = [sheet];
      view.focus();
      view.print();
    }, { once: true });
    frame.srcdoc = html;
    document.body.append(frame);
    status.textContent = "The notice was sent to the printer dialogue.";
  }

  function showValidation(data, local) {
    const items = [];
    for (const issue of data.detail) {
      const loc = Array.isArray(issue.loc) ? issue.loc : [];
      const name = String(loc[0] ?? "");
      const message = issue.msg || "Invalid value.";
      if (fieldError(name, message)) {
        const link = el("a", { href: "#f-" + name }, labelOf(name));
        link.addEventListener("click", (event) => {
          event.preventDefault();
          form.elements.namedItem(name).focus();
        });
        items.push(el("li", {}, link, ": " + message));
      } else {
        items.push(el("li", {}, (loc.join(".") || "Request") + ": " + message));
      }
    }
    const count = items.length === 1 ? "1 field" : items.length + " fields";
    const title = local
      ? "Nothing was sent: " + count + " to complete or correct"
      : "Please correct " + (items.length === 1 ? "1 problem" : items.length + " problems") +
        " and submit again";
    show("problem", el("h2", { id: "result-error" }, title), el("ul", { class: "summary" }, ...items));
    result.focus();
  }

  function showProblem(kind, title, text) {
    show(kind, el("h2", { id: "result-error" }, title), el("p", {}, text));
  }

  function explain(status, data, retryAfter) {
    if (BUSY.has(status)) {
      const wait = retryAfter ? " in " + retryAfter + " seconds" : " in a few seconds";
      showProblem("busy", "The service is busy",
        "Nothing was decided. Please submit again" + wait + ".");
    } else if (status === 401 || status === 403) {
      showProblem("problem", "Sign-in needed", "Nothing was decided: sign in, then submit again.");
      needSignIn("The scoring service asked for sign-in (the token was refused or has " +
        "expired). Your entries are kept: sign in, then submit again.");
    } else if (status === 413) {
      showProblem("problem", "Request too large",
        "The service accepts at most " + (data && data.limit_bytes) + " bytes per request.");
    } else {
      const detail = data && data.error ? data.error : "HTTP " + status;
      showProblem("problem", "The service could not decide",
        detail + ". Please try again; if this persists, contact the platform team.");
    }
  }

  async function onSubmit(event) {
    event.preventDefault();
    if (inFlight) return;
    clearErrors();
    const problems = localProblems();
    if (problems.length) {
      showValidation({ detail: problems }, true);
      return;
    }
    inFlight = true;
    submit.setAttribute("aria-disabled", "true");
    submit.textContent = "Deciding…";
    form.setAttribute("aria-busy", "true");
    try {
      const body = payload();
      let response;
      try {
        response = await fetch(endpoint, {
          method: "POST",
          headers: Object.assign(
            { "Content-Type": "application/json", Accept: "application/json" },
            authHeaders()
          ),
          body: JSON.stringify(body),
        });
      } catch (err) {
        showProblem("problem", "No connection",
          "The scoring service could not be reached. Check the connection and submit again.");
        return;
      }
      let data = null;
      try {
        data = await response.json();
      } catch (err) {
        data = null;
      }
      if (response.ok && data) showDecision(data, body.officer_id);
      else if (response.status === 400 && data && Array.isArray(data.detail)) showValidation(data, false);
      else explain(response.status, data, response.headers.get("Retry-After"));
    } finally {
      inFlight = false;
      submit.removeAttribute("aria-disabled");
      submit.textContent = "Get decision";
      form.removeAttribute("aria-busy");
    }
  }

  form.addEventListener("submit", onSubmit);
  form.addEventListener("reset", () => {
    clearErrors();
    show("");
  });
  document.getElementById("load-example").addEventListener("click", loadExample);
  signinForm.addEventListener("submit", onSignIn);
  signinForm.addEventListener("input", () => {
    signinError.hidden = true; // an answer about what was typed before
  });
  document.getElementById("sign-out").addEventListener("click", signOut);

  async function start() {
    const token = stored(KEYS.token);
    const status = await probe(token);
    authOn = status === 401 || status === 403 || Boolean(token);
    if (token && authOn && (status === 401 || status === 403)) keep({ [KEYS.token]: "" });
    render();
    document.body.dataset.ready = authOn ? "auth" : "open";
  }
  render();
  start();
})();
