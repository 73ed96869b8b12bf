// The operator station page: login, identify, confirm steps, start, follow (server-sent
// events), abort. Plain JS and EventSource; every bench card is redrawn from the state the
// server sends, so a reload or a second browser shows the same.
"use strict";

const operator = { name: sessionStorage.getItem("rig-operator") || "", role: sessionStorage.getItem("rig-role") || "" };
const $ = (id) => document.getElementById(id);

async function post(url, body) {
  const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  let data = {};
  try { data = await r.json(); } catch (e) { data = { error: `HTTP ${r.status}` }; }
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

function showOperator() {
  const logged = !!operator.name;
  $("operator-box").hidden = !logged;
  $("login-box").hidden = logged;
  $("operator-name").textContent = operator.name;
  $("operator-role").textContent = operator.role ? `(${operator.role})` : "";
  document.querySelectorAll(".bench").forEach((b) => updateStart(b.dataset.bench));
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-message").textContent = "";
  try {
    const who = await post("/api/login", { scan: $("login-input").value });
    operator.name = who.name; operator.role = who.role;
    sessionStorage.setItem("rig-operator", who.name); sessionStorage.setItem("rig-role", who.role);
    $("login-input").value = "";
    showOperator();
  } catch (e) { $("login-message").textContent = e.message; $("login-message").className = "message error"; }
});
$("logout-button").addEventListener("click", () => {
  operator.name = operator.role = ""; sessionStorage.clear(); showOperator();
});

const identified = {};  // bench -> identity

function message(bench, text, error) {
  const m = $(`message-${bench}`);
  m.textContent = text || "";
  m.className = error ? "message error" : "message";
}

function updateStart(bench) {
  const id = identified[bench];
  const btn = $(`start-${bench}`);
  if (!btn) return;
  const boxes = [...document.querySelectorAll(`#steps-${bench} input[type=checkbox]`)];
  btn.disabled = !(id && operator.name && boxes.every((b) => b.checked) && !busy[bench]);
  btn.title = !operator.name ? "log in first" : (!boxes.every((b) => b.checked) ? "confirm every step first" : "");
}

document.querySelectorAll(".bench").forEach((section) => {
  const bench = section.dataset.bench;
  $(`serial-form-${bench}`).addEventListener("submit", async (ev) => {
    ev.preventDefault();
    message(bench, "asking the table who it is ...");
    $(`identity-${bench}`).hidden = true;
    delete identified[bench];
    try {
      const who = await post(`/api/bench/${bench}/identify`, { serial: $(`serial-${bench}`).value });
      identified[bench] = who;
      $(`model-${bench}`).textContent = `${who.model} (PLC KIND ${who.kind}, ${who.kind_name}; ICD ${who.icd_version}; PLC serial ${who.plc_serial}) - serial ${who.serial}`;
      const ul = $(`steps-${bench}`);
      ul.replaceChildren();
      for (const s of who.steps) {
        const li = document.createElement("li");
        const label = document.createElement("label");
        const box = document.createElement("input");
        box.type = "checkbox"; box.id = `step-${bench}-${s.id}`; box.value = s.id;
        box.addEventListener("change", () => updateStart(bench));
        label.append(box, " I have done this: ", s.text);
        li.append(label); ul.append(li);
      }
      $(`identity-${bench}`).hidden = false;
      message(bench, "");
      updateStart(bench);
    } catch (e) { message(bench, e.message, true); }
  });
  $(`start-${bench}`).addEventListener("click", async () => {
    const who = identified[bench];
    const confirmed = [...document.querySelectorAll(`#steps-${bench} input:checked`)].map((b) => b.value);
    try {
      await post(`/api/bench/${bench}/start`, { serial: who.serial, operator: operator.name, confirmed });
      message(bench, "started");
      $(`identity-${bench}`).hidden = true;
    } catch (e) { message(bench, e.message, true); }
  });
  $(`abort-${bench}`).addEventListener("click", async () => {
    try {
      await post(`/api/bench/${bench}/abort`, { operator: operator.name });
      message(bench, "aborting: the rig is making the table safe ...");
    } catch (e) { message(bench, e.message, true); }
  });
  const source = new EventSource(`/api/bench/${bench}/stream`);
  source.addEventListener("state", (ev) => render(JSON.parse(ev.data)));
});

const busy = {};
// what a verdict that is not about the unit tells the operator (as `rig certify` says it)
const ADVICE = {
  "NOT CERTIFIED - retest": "a requirement could not be judged (a rig or bench fault, not the unit); run again",
  "NOT CERTIFIED - partial": "only some requirements were run",
  "INTERRUPTED": "the run was aborted; the unit is not certified",
  "INCOMPLETE": "the run did not end; the unit is not certified",
};

function fmt(s) {
  if (s === undefined || s === null) return "";
  return s >= 120 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(0)} s`;
}

function render(b) {
  busy[b.id] = b.busy;
  const status = $(`status-${b.id}`);
  status.textContent = b.busy ? "running" : "idle";
  status.className = b.busy ? "status running" : "status";
  updateStart(b.id);
  const run = b.run;
  if (!run) return;
  $(`run-${b.id}`).hidden = false;
  $(`runinfo-${b.id}`).textContent = `${run.model} serial ${run.serial}, started ${run.started} by ${run.operator}` +
    (run.aborted_by ? `; aborted by ${run.aborted_by}` : "");
  $(`abort-${b.id}`).hidden = !run.running;
  const tbody = $(`reqs-${b.id}`);
  tbody.replaceChildren();
  if (!run.requirements.length && run.running) {
    const tr = document.createElement("tr"); const td = document.createElement("td");
    td.colSpan = 4; td.textContent = "starting: connecting to the bench, checking the instruments ...";
    tr.append(td); tbody.append(tr);
  }
  for (const r of run.requirements) {
    const tr = document.createElement("tr");
    tr.id = `req-${b.id}-${r.id}`;
    if (r.state === "running") tr.className = "running";
    const dev = r.device_s !== undefined ? fmt(r.device_s) + (r.expected_s ? ` of ~${fmt(r.expected_s)}` : "") : (r.expected_s ? `~${fmt(r.expected_s)}` : "");
    for (const [text, cls] of [[r.id, ""], [r.state, r.state], [r.step || r.note || "", ""], [dev, ""]]) {
      const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.append(td);
    }
    tbody.append(tr);
  }
  const traces = $(`traces-${b.id}`);
  for (const t of run.traces) {
    const id = `trace-${b.id}-${t}`;
    if (document.getElementById(id)) continue;
    const img = document.createElement("img");
    img.id = id; img.alt = t; img.src = `/run/${run.id}/file/${t}`;
    // the plot is drawn after its trace is announced (the first one imports matplotlib): try
    // again a while before giving up on it
    let tries = 0;
    img.addEventListener("error", () => {
      if (++tries <= 30) setTimeout(() => { img.src = `/run/${run.id}/file/${t}?try=${tries}`; }, 1000);
    });
    traces.append(img);
  }
  const verdict = $(`verdict-${b.id}`);
  const done = !run.running;
  if (done) {
    const v = run.verdict || (run.exit_code === 2 ? "refused" : "NO RECORD");
    const big = v === "PASS" ? "PASS" : (v === "FAIL" ? "FAIL" : "NOT CERTIFIED");
    verdict.className = `verdict ${big === "NOT CERTIFIED" ? "NOTCERT" : big}`;
    verdict.replaceChildren(document.createTextNode(big));
    const small = document.createElement("small");
    small.textContent = big === v ? `${run.model} serial ${run.serial}` : v + (ADVICE[v] ? `: ${ADVICE[v]}` : "") + (run.output ? `: ${run.output}` : "");
    verdict.append(small);
    verdict.hidden = false;
    verdict.dataset.verdict = v;
  } else { verdict.hidden = true; }
  const failing = $(`failing-${b.id}`);
  failing.replaceChildren();
  for (const f of run.failing) {
    const li = document.createElement("li");
    li.textContent = `${f.id}: ${f.verdict}${f.why ? " - " + f.why : ""}`;
    failing.append(li);
  }
  const safe = $(`safe-${b.id}`);
  const rs = run.record_safe_state;
  if (done && rs) {
    safe.className = "safe confirmed";
    safe.textContent = `Table made safe: ${rs.event} (state ${rs.state}, fault ${rs.fault}, verified by ${rs.verified_by || "PLC"}${rs.step ? ", " + rs.step : ""}) - from the record`;
  } else if (run.unsafe || (run.safe && !run.safe.confirmed && run.safe.final)) {
    safe.className = "safe unsafe";
    safe.textContent = `TABLE NOT CONFIRMED SAFE: ${run.unsafe || run.safe.error}`;
  } else if (done && !run.started_any) {
    safe.className = "safe";
    safe.textContent = "The run ended before any test started: nothing was moved.";
  } else if (done && run.safe && run.safe.confirmed && run.safe.final) {
    safe.className = "safe confirmed";
    safe.textContent = `Table made safe: final safe state confirmed (state ${run.safe.details.state}) - from the run's events (the record has no such event)`;
  } else if (done) {
    safe.className = "safe unsafe";
    safe.textContent = "TABLE SAFE STATE NOT KNOWN: no final safe-state check was recorded; check the bench before touching it";
  } else if (run.aborted_by && run.running) {
    safe.className = "safe"; safe.textContent = "aborting: making the table safe ...";
  } else { safe.className = "safe"; safe.textContent = ""; }
  const cert = $(`certificate-${b.id}`);
  cert.hidden = !(done && run.certificate);
  cert.href = `/run/${run.id}/certificate`;
}

showOperator();
