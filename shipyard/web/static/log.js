// The build log viewer: pages of lines fetched by number (so a 2 M-line log never loads at
// once), the live tail over the API's server-sent events, ANSI colours, auto-scroll that
// pauses when you scroll up, search over the whole log, and #L<n> line links.
"use strict";

(function () {
  const section = document.getElementById("log-section");
  if (!section) return;
  const view = document.getElementById("logview");
  const rangeLabel = document.getElementById("log-range");
  const followBox = document.getElementById("log-follow");
  const wrapBox = document.getElementById("log-wrap");
  const liveState = document.getElementById("live-state");
  const results = document.getElementById("log-results");
  const PAGE = 500;          // lines per page
  const LIVE_WINDOW = 3000;  // lines kept in the page while following

  let total = 0;             // lines in the log so far
  let concluded = section.dataset.concluded === "true";
  let mode = "live";         // "live": the latest lines, growing; "page": a fixed page
  let firstShown = 0;        // number (0-based) of the first line shown
  let lastShown = -1;        // number of the last line shown
  let term = "";             // the search term, highlighted
  let source = null;
  let programmaticScroll = false;

  // --- ANSI SGR colours ----------------------------------------------------------------------
  const ESC = /\x1b\[([0-9;?]*)([A-Za-z])/g;
  const PALETTE = [
    "#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
    "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
  ];
  function color256(n) {
    if (n < 16) return PALETTE[n];
    if (n >= 232) { const v = 8 + (n - 232) * 10; return "rgb(" + v + "," + v + "," + v + ")"; }
    n -= 16;
    const steps = [0, 95, 135, 175, 215, 255];
    return "rgb(" + steps[Math.floor(n / 36)] + "," + steps[Math.floor(n / 6) % 6] + "," + steps[n % 6] + ")";
  }
  function applySgr(state, params) {
    const codes = params === "" ? [0] : params.split(";").map((p) => parseInt(p || "0", 10));
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) { state.fg = state.bg = null; state.bold = state.dim = state.italic = state.underline = false; }
      else if (c === 1) state.bold = true;
      else if (c === 2) state.dim = true;
      else if (c === 3) state.italic = true;
      else if (c === 4) state.underline = true;
      else if (c === 22) state.bold = state.dim = false;
      else if (c === 23) state.italic = false;
      else if (c === 24) state.underline = false;
      else if (c >= 30 && c <= 37) state.fg = PALETTE[c - 30];
      else if (c >= 90 && c <= 97) state.fg = PALETTE[c - 90 + 8];
      else if (c === 39) state.fg = null;
      else if (c >= 40 && c <= 47) state.bg = PALETTE[c - 40];
      else if (c >= 100 && c <= 107) state.bg = PALETTE[c - 100 + 8];
      else if (c === 49) state.bg = null;
      else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
        state[c === 38 ? "fg" : "bg"] = color256(codes[i + 2] || 0); i += 2;
      } else if ((c === 38 || c === 48) && codes[i + 1] === 2) {
        state[c === 38 ? "fg" : "bg"] = "rgb(" + (codes[i + 2] || 0) + "," + (codes[i + 3] || 0) + "," + (codes[i + 4] || 0) + ")"; i += 4;
      }
    }
  }
  function addText(parent, text) {
    if (!term) { parent.appendChild(document.createTextNode(text)); return; }
    const lower = text.toLowerCase(), needle = term.toLowerCase();
    let at = 0, hit;
    while ((hit = lower.indexOf(needle, at)) !== -1) {
      if (hit > at) parent.appendChild(document.createTextNode(text.slice(at, hit)));
      const mark = document.createElement("mark");
      mark.textContent = text.slice(hit, hit + needle.length);
      parent.appendChild(mark);
      at = hit + needle.length;
    }
    if (at < text.length) parent.appendChild(document.createTextNode(text.slice(at)));
  }
  function renderAnsi(parent, raw) {
    const text = raw.replace(/\r(?!$)/g, "");
    const state = { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };
    let at = 0, m;
    ESC.lastIndex = 0;
    const flush = (chunk) => {
      if (!chunk) return;
      if (!state.fg && !state.bg && !state.bold && !state.dim && !state.italic && !state.underline) { addText(parent, chunk); return; }
      const span = document.createElement("span");
      if (state.fg) span.style.color = state.fg;
      if (state.bg) span.style.backgroundColor = state.bg;
      if (state.bold) span.style.fontWeight = "bold";
      if (state.dim) span.style.opacity = "0.7";
      if (state.italic) span.style.fontStyle = "italic";
      if (state.underline) span.style.textDecoration = "underline";
      addText(span, chunk);
      parent.appendChild(span);
    };
    while ((m = ESC.exec(text)) !== null) {
      flush(text.slice(at, m.index));
      if (m[2] === "m") applySgr(state, m[1]);
      at = ESC.lastIndex;
    }
    flush(text.slice(at));
  }

  // --- rows ----------------------------------------------------------------------------------
  function row(line) {
    const div = document.createElement("div");
    const n = line.n + 1;
    div.className = "line";
    div.id = "L" + n;
    const a = document.createElement("a");
    a.className = "ln";
    a.href = "#L" + n;
    a.textContent = n;
    a.tabIndex = -1;
    const txt = document.createElement("span");
    txt.className = "txt";
    renderAnsi(txt, line.log);
    div.append(a, txt);
    return div;
  }

  function updateRange() {
    // The line-number column fits the largest number of this log.
    view.style.setProperty("--ln-digits", String(Math.max(4, String(total).length)));
    const shown = lastShown >= firstShown ? (firstShown + 1).toLocaleString() + "–" + (lastShown + 1).toLocaleString() : "no lines";
    rangeLabel.textContent = total ? "lines " + shown + " of " + total.toLocaleString() : (concluded ? "the log is empty" : "waiting for the first line…");
    document.getElementById("log-prev").disabled = firstShown <= 0;
    document.getElementById("log-first").disabled = firstShown <= 0;
    document.getElementById("log-next").disabled = mode === "live" || lastShown + 1 >= total;
  }

  function atBottom() { return view.scrollHeight - view.scrollTop - view.clientHeight < 24; }
  function scrollToBottom() {
    programmaticScroll = true;
    view.scrollTop = view.scrollHeight;
    requestAnimationFrame(() => { programmaticScroll = false; });
  }

  function replace(lines) {
    view.replaceChildren();
    const frag = document.createDocumentFragment();
    lines.forEach((l) => frag.appendChild(row(l)));
    view.appendChild(frag);
    firstShown = lines.length ? lines[0].n : firstShown;
    lastShown = lines.length ? lines[lines.length - 1].n : firstShown - 1;
    updateRange();
  }

  function append(lines) {
    const fresh = lines.filter((l) => l.n > lastShown);
    if (!fresh.length) return;
    const stick = followBox.checked;
    const frag = document.createDocumentFragment();
    fresh.forEach((l) => frag.appendChild(row(l)));
    view.appendChild(frag);
    if (lastShown < firstShown) firstShown = fresh[0].n;
    lastShown = fresh[fresh.length - 1].n;
    while (view.childElementCount > LIVE_WINDOW) { view.firstElementChild.remove(); firstShown += 1; }
    updateRange();
    if (stick) scrollToBottom();
  }

  // --- fetching ------------------------------------------------------------------------------
  async function fetchJson(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (response.status === 401) { window.location.href = "/signin"; throw new Error("signed out"); }
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.json();
  }

  async function openTail() {
    mode = "live";
    const page = await fetchJson(section.dataset.logUrl + "?tail=" + PAGE);
    total = page.total;
    concluded = concluded || page.concluded;
    replace(page.lines);
    if (!page.lines.length) { firstShown = 0; lastShown = total - 1; updateRange(); }
    followBox.checked = true;
    scrollToBottom();
    if (!concluded) stream();
    setLive();
  }

  async function openAt(start, focusLine) {
    mode = "page";
    const page = await fetchJson(section.dataset.logUrl + "?from=" + Math.max(0, start) + "&count=" + PAGE);
    total = page.total;
    replace(page.lines);
    followBox.checked = false;
    if (focusLine !== undefined) highlight(focusLine);
    else { programmaticScroll = true; view.scrollTop = 0; requestAnimationFrame(() => { programmaticScroll = false; }); }
    // A fixed page needs no live lines; "Latest" opens the stream again where the log is.
    if (source) { source.close(); source = null; }
    setLive();
  }

  function highlight(n) {
    view.querySelectorAll(".line.hl").forEach((el) => el.classList.remove("hl"));
    const el = document.getElementById("L" + n);
    if (!el) return;
    el.classList.add("hl");
    programmaticScroll = true;
    el.scrollIntoView({ block: "center" });
    requestAnimationFrame(() => { programmaticScroll = false; });
  }

  function goToLine(n) {
    if (!(n >= 1)) return;
    if (n - 1 >= firstShown && n - 1 <= lastShown) {
      if (mode === "live") { followBox.checked = false; }
      highlight(n);
      return;
    }
    openAt(n - 1 - Math.floor(PAGE / 4), n);
  }

  function stream() {
    if (source) return;
    const url = section.dataset.streamUrl + "&after=" + Math.max(-1, lastShown);
    source = new EventSource(url);
    source.onmessage = (event) => {
      const line = JSON.parse(event.data);
      const n = parseInt(event.lastEventId, 10);
      total = Math.max(total, n + 1);
      if (mode === "live") append([{ n, ts: line.ts, log: line.log }]);
      else updateRange();
      // A new stage or step: the summary above refreshes now, not at its next poll.
      if (/^(==> |(\[\d+\/\d+\] )?STEP \d+\/\d+:)/.test(line.log)) {
        document.body.dispatchEvent(new CustomEvent("logstep", { bubbles: true }));
      }
    };
    source.addEventListener("end", () => {
      source.close();
      source = null;
      concluded = true;
      setLive();
      updateRange();
      document.body.dispatchEvent(new CustomEvent("buildended", { bubbles: true }));
    });
    source.onerror = () => {
      // The browser retries by itself (with Last-Event-ID); closed means it gave up.
      if (source && source.readyState === EventSource.CLOSED) { source = null; setLive(); }
    };
    setLive();
  }

  function setLive() {
    if (concluded) { liveState.textContent = "finished"; liveState.className = "live-dot done"; }
    else if (source) { liveState.textContent = "live"; liveState.className = "live-dot on"; }
    else if (mode === "page") { liveState.textContent = "paused"; liveState.className = "live-dot"; }
    else { liveState.textContent = "offline"; liveState.className = "live-dot"; }
  }

  // --- controls ------------------------------------------------------------------------------
  view.addEventListener("scroll", () => {
    if (programmaticScroll || mode !== "live") return;
    followBox.checked = atBottom();
  });
  followBox.addEventListener("change", () => {
    if (followBox.checked) { if (mode !== "live") openTail(); else scrollToBottom(); }
  });
  wrapBox.addEventListener("change", () => view.classList.toggle("wrap", wrapBox.checked));
  document.getElementById("log-first").addEventListener("click", () => openAt(0));
  document.getElementById("log-prev").addEventListener("click", () => openAt(Math.max(0, firstShown - PAGE)));
  document.getElementById("log-next").addEventListener("click", () => {
    if (lastShown + 1 + PAGE >= total) openTail(); else openAt(lastShown + 1);
  });
  document.getElementById("log-last").addEventListener("click", () => openTail());
  document.getElementById("log-goto").addEventListener("submit", (event) => {
    event.preventDefault();
    goToLine(parseInt(document.getElementById("log-goto-input").value, 10));
  });
  view.addEventListener("click", (event) => {
    const link = event.target.closest("a.ln");
    if (!link) return;
    event.preventDefault();
    history.replaceState(null, "", link.getAttribute("href"));
    if (mode === "live") followBox.checked = false;
    highlight(parseInt(link.textContent, 10));
  });
  document.addEventListener("click", (event) => {
    const step = event.target.closest("[data-goto-line]");
    if (!step) return;
    event.preventDefault();
    history.replaceState(null, "", "#L" + step.dataset.gotoLine);
    goToLine(parseInt(step.dataset.gotoLine, 10));
    view.focus({ preventScroll: true });
  });
  view.addEventListener("keydown", (event) => {
    if (event.key === "End" && event.ctrlKey) { event.preventDefault(); openTail(); }
    if (event.key === "Home" && event.ctrlKey) { event.preventDefault(); openAt(0); }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && !/INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName)) {
      event.preventDefault();
      document.getElementById("log-search-input").focus();
    }
  });
  window.addEventListener("hashchange", () => {
    const m = /^#L(\d+)$/.exec(window.location.hash);
    if (m) goToLine(parseInt(m[1], 10));
  });

  document.getElementById("log-search").addEventListener("submit", async (event) => {
    event.preventDefault();
    term = document.getElementById("log-search-input").value.trim();
    results.replaceChildren();
    if (!term) { results.hidden = true; (mode === "live" ? openTail() : openAt(firstShown)); return; }
    const found = await fetchJson(section.dataset.searchUrl + "?q=" + encodeURIComponent(term));
    const head = document.createElement("p");
    head.className = "small muted";
    const count = found.matches.length;
    head.textContent = count
      ? count + (found.more ? "+" : "") + (count === 1 && !found.more ? " matching line" : " matching lines")
      : "No line contains “" + term + "”.";
    results.appendChild(head);
    const list = document.createElement("ol");
    found.matches.forEach((m) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = "#L" + (m.n + 1);
      a.dataset.gotoLine = m.n + 1;
      const num = document.createElement("span");
      num.className = "mono muted";
      num.textContent = (m.n + 1) + " ";
      const txt = document.createElement("span");
      txt.className = "mono";
      addText(txt, m.log.replace(ESC, "").slice(0, 240));
      a.append(num, txt);
      li.appendChild(a);
      list.appendChild(li);
    });
    results.appendChild(list);
    results.hidden = false;
    // Re-render what is shown, with the term highlighted.
    if (mode === "live") openTail(); else openAt(firstShown);
  });

  const hash = /^#L(\d+)$/.exec(window.location.hash);
  if (hash) goToLine(parseInt(hash[1], 10)); else openTail();
})();
