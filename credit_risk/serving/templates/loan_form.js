"use strict";
// Loan-officer form: posts the applicant as JSON to the API and renders the answer.
// Everything from the server is inserted with textContent, never as HTML.
(function () {
  const form = document.getElementById("applicant-form");
  const result = document.getElementById("result");
  const submit = document.getElementById("submit");
  // Relative to the page, so the form works wherever the service is mounted:
  // /ui/ -> ../classify, /ui -> classify; both resolve to <prefix>/classify.
  const endpoint = new URL(
    (location.pathname.endsWith("/") ? "../" : "") + form.dataset.endpoint,
    location.href
  );
  const BUSY = new Set([429, 503, 504]);
  let inFlight = false; // the button stays focusable while busy, so it is not `disabled`

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function labelOf(name) {
    const label = document.querySelector('label[for="f-' + CSS.escape(name) + '"]');
    return label ? label.textContent : name;
  }

  function payload() {
    const body = {};
    for (const input of form.elements) {
      if (!input.name) continue;
      const raw = input.value.trim();
      if (raw === "") continue; // the API then names the missing field
      if (input.dataset.kind === "integer" || input.dataset.kind === "number") {
        const number = Number(raw);
        body[input.name] = Number.isFinite(number) ? number : raw;
      } else {
        body[input.name] = raw;
      }
    }
    return body;
  }

  function clearErrors() {
    for (const input of form.elements) {
      if (!input.name) continue;
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

  function showDecision(d) {
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
    show("",
      el("h2", {}, "Decision"),
      el("div", { class: "decision " + d.decision, id: "result-decision",
        "data-decision": d.decision }, word),
      facts,
      el("h3", {}, d.reason_codes.length ? "Principal reasons" : "Reasons"),
      reasons,
      el("p", { class: "reference" }, "Decision reference ",
        el("code", { id: "result-reference" }, d.decision_id),
        ": keep it with the application to find this decision again."),
      el("p", { class: "meta" }, "Model " + d.model_version));
    result.scrollIntoView({ block: "nearest" }); // announced by aria-live; focus stays put
  }

  function showValidation(data) {
    const items = [];
    let first = null;
    for (const issue of data.detail) {
      const loc = Array.isArray(issue.loc) ? issue.loc : [];
      const name = String(loc[0] ?? "");
      const message = issue.msg || "Invalid value.";
      if (fieldError(name, message)) {
        first = first || name;
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
    const count = items.length === 1 ? "1 problem" : items.length + " problems";
    show("problem",
      el("h2", { id: "result-error" }, "Please correct " + count + " and submit again"),
      el("ul", { class: "summary" }, ...items));
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
      showProblem("problem", "Not authorised",
        "The scoring service requires an access token that this form does not have.");
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
    inFlight = true;
    clearErrors();
    submit.setAttribute("aria-disabled", "true");
    submit.textContent = "Deciding…";
    form.setAttribute("aria-busy", "true");
    try {
      let response;
      try {
        response = await fetch(endpoint, {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify(payload()),
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
      if (response.ok && data) showDecision(data);
      else if (response.status === 400 && data && Array.isArray(data.detail)) showValidation(data);
      else explain(response.status, data, response.headers.get("Retry-After"));
    } finally {
      inFlight = false;
      submit.removeAttribute("aria-disabled");
      submit.textContent = "Get decision";
      form.removeAttribute("aria-busy");
    }
  }

  form.addEventListener("submit", onSubmit);
  // A value the browser refuses (age 12) blocks the submit before any request: the last
  // decision would stay on screen as if it answered the values now in the form.
  form.addEventListener("invalid", () => {
    if (!document.getElementById("result-decision")) return;
    showProblem("", "No decision for these values",
      "The decision shown before no longer applies: correct the marked value and submit again.");
  }, true); // `invalid` does not bubble
  form.addEventListener("reset", () => {
    clearErrors();
    show("");
  });
})();
