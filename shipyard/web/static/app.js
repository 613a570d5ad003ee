// Shipyard dashboard: buttons and forms that call the API (through /ui/api, with the
// session's CSRF token), copy buttons, and small niceties. No framework; htmx does the swaps.
"use strict";

(function () {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";

  function toast(text, tone) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = text;
    box.className = "show " + (tone || "");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { box.className = ""; }, 4000);
  }
  window.shipyardToast = toast;

  async function api(method, path, body) {
    const init = { method, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      return { ok: false, message: "Shipyard did not answer (" + err.message + ")" };
    }
    let json = null;
    try { json = await response.json(); } catch (_) { /* not JSON */ }
    if (response.ok) return { ok: true, data: json && json.data };
    if (response.status === 401) { window.location.href = "/signin?reason=expired"; }
    const err = json && json.error;
    let message = err && err.message ? err.message : "HTTP " + response.status;
    if (err && err.details && typeof err.details === "object") {
      const parts = Object.entries(err.details).filter(([k]) => !message.startsWith(k)).map(([k, v]) => k + ": " + v);
      if (parts.length) message += " (" + parts.join("; ") + ")";
    }
    return { ok: false, status: response.status, message };
  }
  window.shipyardApi = api;

  function follow(then, data) {
    if (!then) return;
    if (then === "refresh") {
      if (window.htmx) {
        document.querySelectorAll("#summary, #actions").forEach((el) => window.htmx.trigger(el, "refresh"));
        window.htmx.trigger(document.body, "buildended");
      }
      return;
    }
    window.location.href = then.replace("{id}", data && data.id ? encodeURIComponent(data.id) : "");
  }

  // --- bodies of the forms -----------------------------------------------------------------

  function b64(text) {
    const bytes = new TextEncoder().encode(text);
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(bin);
  }

  function rows(form, name) {
    const out = {};
    form.querySelectorAll('[data-rows="' + name + '"] .row').forEach((row) => {
      const k = row.querySelector("[data-k]").value.trim();
      const v = row.querySelector("[data-v]").value;
      if (k) out[k] = v;
    });
    return out;
  }

  function value(form, name) {
    const el = form.elements[name];
    return el ? el.value.trim() : "";
  }

  function lines(text) {
    return text.split("\n").map((l) => l.trim()).filter(Boolean);
  }

  const bodies = {
    startBuild(form) {
      const body = {};
      const branch = value(form, "branch"), pr = value(form, "pullRequestId"), sha = value(form, "sha");
      if (branch) body.branch = branch;
      if (pr) body.pullRequestId = Number(pr);
      if (sha) body.sha = sha;
      const overrides = {};
      const args = rows(form, "buildArguments");
      if (Object.keys(args).length) overrides.buildArguments = args;
      for (const name of ["buildFiles", "dockerSecretMounts"]) {
        const given = rows(form, name);
        const keys = Object.keys(given);
        if (keys.length) {
          overrides[name] = {};
          keys.forEach((k) => { overrides[name][k] = { data: b64(given[k]), encoding: "utf-8" }; });
        }
      }
      const docker = {};
      for (const name of ["dockerFilePath", "dockerWorkDir", "dockerfileTarget"]) {
        const v = value(form, name);
        if (v) docker[name] = v;
      }
      if (Object.keys(docker).length) overrides.docker = docker;
      if (Object.keys(overrides).length) body.overrides = overrides;
      return body;
    },
    settings(form) {
      const vcs = {};
      const url = form.elements.projectUrl, branch = form.elements.projectBranch;
      if (url.value.trim() !== url.dataset.initial) vcs.projectUrl = url.value.trim();
      if (branch.value.trim() !== branch.dataset.initial) vcs.projectBranch = branch.value.trim() || null;
      const flags = lines(form.elements.ciIgnoreFlags.value);
      const body = {
        buildSettings: { dockerfile: {
          dockerFilePath: value(form, "dockerFilePath"),
          dockerWorkDir: value(form, "dockerWorkDir"),
          buildkit: { useCache: form.elements.useCache.checked },
        } },
        buildConfiguration: {
          pathIgnoreRules: lines(form.elements.pathIgnoreRules.value),
          isAllowList: form.elements.isAllowList.checked,
          ciIgnoreFlagsEnabled: form.elements.ciIgnoreFlagsEnabled.checked,
          ciIgnoreFlags: flags.length ? flags : null,
          dockerfileTarget: value(form, "dockerfileTarget") || null,
          includeGitFolder: form.elements.includeGitFolder.checked,
          fullGitClone: form.elements.fullGitClone.checked,
        },
      };
      if (Object.keys(vcs).length) body.vcsData = vcs;
      return body;
    },
  };

  // --- wiring ------------------------------------------------------------------------------

  document.addEventListener("click", async (event) => {
    const copy = event.target.closest("[data-copy]");
    if (copy) {
      const source = document.querySelector(copy.dataset.copy);
      const text = source ? source.textContent.trim() : "";
      try {
        await navigator.clipboard.writeText(text);
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(source);
        const sel = window.getSelection();
        sel.removeAllRanges(); sel.addRange(range);
        document.execCommand("copy");
      }
      copy.textContent = "Copied";
      setTimeout(() => { copy.textContent = "Copy"; }, 1500);
      return;
    }
    const add = event.target.closest("[data-add-row]");
    if (add) {
      const box = document.querySelector('[data-rows="' + add.dataset.addRow + '"]');
      const row = box.querySelector("template").content.firstElementChild.cloneNode(true);
      box.appendChild(row);
      row.querySelector("input, textarea").focus();
      return;
    }
    const remove = event.target.closest("[data-remove-row]");
    if (remove) { remove.closest(".row").remove(); return; }
    const button = event.target.closest("button[data-api-method]");
    if (button) {
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
      button.disabled = true;
      const result = await api(button.dataset.apiMethod, button.dataset.apiPath);
      if (!result.ok) {
        button.disabled = false;
        toast(result.message, "bad");
        return;
      }
      toast(button.dataset.apiMethod === "DELETE" ? "Abort requested" : "Done", "ok");
      follow(button.dataset.then, result.data);
    }
  });

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form.apiform");
    if (!form) return;
    event.preventDefault();
    const error = form.querySelector("[data-error]");
    const submit = form.querySelector('button[type="submit"]');
    error.hidden = true;
    let body;
    try {
      body = bodies[form.dataset.body](form);
    } catch (err) {
      error.textContent = err.message; error.hidden = false; return;
    }
    submit.disabled = true;
    const result = await api(form.dataset.apiMethod, form.dataset.apiPath, body);
    submit.disabled = false;
    if (!result.ok) {
      error.textContent = result.message;
      error.hidden = false;
      error.focus && error.focus();
      return;
    }
    follow(form.dataset.then, result.data);
  });

  // Times: "3 min ago" in the text, the exact UTC time on hover (its title); refreshed after
  // every htmx swap and every half minute.
  function relative(iso) {
    const then = Date.parse(iso);
    if (isNaN(then)) return null;
    const s = Math.round((Date.now() - then) / 1000);
    if (s < -60) return null;
    if (s < 45) return "just now";
    if (s < 90) return "a minute ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 5400) return "an hour ago";
    if (s < 86400) return Math.round(s / 3600) + " hours ago";
    if (s < 172800) return "yesterday";
    if (s < 30 * 86400) return Math.round(s / 86400) + " days ago";
    return null;
  }
  function humanTimes(root) {
    root.querySelectorAll("time[datetime]").forEach((el) => {
      if (!el.dataset.exact) el.dataset.exact = el.textContent;
      const text = relative(el.getAttribute("datetime"));
      el.title = el.dataset.exact;
      el.textContent = text || el.dataset.exact;
    });
  }
  document.addEventListener("DOMContentLoaded", () => humanTimes(document));
  document.addEventListener("htmx:afterSettle", (e) => humanTimes(e.target));
  setInterval(() => humanTimes(document), 30000);

  // A build page: when the summary shows the build concluded, the actions and the log know.
  let ended = false;
  document.addEventListener("htmx:afterSettle", () => {
    const summary = document.getElementById("summary");
    if (!ended && summary && summary.dataset.concluded === "true" && document.body.dataset.wasRunning === "true") {
      ended = true;
      document.body.dispatchEvent(new CustomEvent("buildended", { bubbles: true }));
    }
  });
  document.addEventListener("DOMContentLoaded", () => {
    const summary = document.getElementById("summary");
    if (summary) document.body.dataset.wasRunning = summary.dataset.concluded === "true" ? "false" : "true";
  });
})();
