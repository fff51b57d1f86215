// speech-gru serve: the page. Captures the microphone, streams 16 kHz int16 PCM to /ws,
// draws the keyword scores the server sends back, lists events, uploads files.
"use strict";

const COLORS = ["#2563eb", "#dc6803", "#039855", "#c11574", "#6941c6", "#0e9384",
                "#b54708", "#3538cd", "#e31b54", "#475467"];
const PLOT_SECONDS = 10;

const $ = (id) => document.getElementById(id);
const state = {
  info: null,          // /api/info
  keywords: [],
  threshold: 0.7,
  points: [],          // {t, scores: [...]} for the last PLOT_SECONDS
  events: [],          // {label, time_s, score} shown on the plot
  now: 0,              // stream time of the last window
  socket: null,
  audio: null,         // {context, stream, node}
  listening: false,
};

function showError(where, message) {
  const box = $(where);
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(text) {
  $("status").textContent = text;
}

function clock(seconds) {
  const m = Math.floor(seconds / 60);
  const s = (seconds - 60 * m).toFixed(2).padStart(5, "0");
  return `${String(m).padStart(2, "0")}:${s}`;
}

function setThreshold(value, send) {
  state.threshold = value;
  $("threshold").value = value;
  $("threshold-value").textContent = Number(value).toFixed(2);
  if (send && state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify({ type: "threshold", value: Number(value) }));
  }
  draw();
}

async function loadInfo() {
  try {
    const response = await fetch("/api/info");
    const info = await response.json();
    state.info = info;
    state.keywords = info.keywords;
    $("model").textContent = `${info.model}: ${info.keywords.join(", ")}`;
    $("origin").textContent = info.origin ? `${info.origin}; hop ${info.hop_s} s` :
      `threshold ${info.threshold}, average ${info.average_s} s, refractory ` +
      `${info.refractory_s} s, hop ${info.hop_s} s`;
    setThreshold(info.threshold, false);
    $("legend").replaceChildren(...info.keywords.map((k, i) => {
      const item = document.createElement("span");
      item.textContent = k;
      item.style.setProperty("--swatch", COLORS[i % COLORS.length]);
      return item;
    }));
    $("listen").disabled = false;
  } catch (err) {
    showError("error", `cannot reach the server: ${err}`);
  }
}

// -- the plot --------------------------------------------------------------------------

function draw() {
  const canvas = $("plot");
  const ctx = canvas.getContext("2d");
  const W = canvas.width;
  const H = canvas.height;
  const left = 40, right = 10, top = 10, bottom = 24;
  const w = W - left - right, h = H - top - bottom;
  const t1 = Math.max(state.now, PLOT_SECONDS), t0 = t1 - PLOT_SECONDS;
  const x = (t) => left + ((t - t0) / PLOT_SECONDS) * w;
  const y = (p) => top + (1 - p) * h;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#667085";
  ctx.strokeStyle = "#eaecf0";
  ctx.lineWidth = 1;
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    ctx.beginPath(); ctx.moveTo(left, y(p)); ctx.lineTo(W - right, y(p)); ctx.stroke();
    ctx.fillText(p.toFixed(2), 4, y(p) + 4);
  }
  for (let t = Math.ceil(t0); t <= t1; t++) {
    ctx.fillText(`${t}s`, x(t) - 8, H - 6);
  }
  // the threshold
  ctx.save();
  ctx.setLineDash([6, 4]);
  ctx.strokeStyle = "#b42318";
  ctx.beginPath(); ctx.moveTo(left, y(state.threshold)); ctx.lineTo(W - right, y(state.threshold));
  ctx.stroke();
  ctx.restore();
  // events: a marker at the time each fired
  for (const e of state.events) {
    if (e.time_s < t0) continue;
    const i = state.keywords.indexOf(e.label);
    ctx.fillStyle = COLORS[(i < 0 ? 0 : i) % COLORS.length];
    ctx.fillRect(x(e.time_s) - 1, top, 2, h);
    ctx.fillText(`${e.label} ${e.score.toFixed(2)}`, x(e.time_s) + 4, top + 12);
  }
  // each keyword's averaged score
  ctx.lineWidth = 2;
  state.keywords.forEach((k, i) => {
    ctx.strokeStyle = COLORS[i % COLORS.length];
    ctx.beginPath();
    state.points.forEach((point, j) => {
      const px = x(point.t), py = y(point.scores[i]);
      if (j === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    });
    ctx.stroke();
  });
}

// -- messages from the server --------------------------------------------------------------

function onMessage(message) {
  let data;
  try {
    data = JSON.parse(message.data);
  } catch (err) {
    return;
  }
  if (data.type === "scores") {
    data.times.forEach((t, i) => state.points.push({ t, scores: data.scores[i] }));
    state.now = data.times[data.times.length - 1];
    const t0 = state.now - PLOT_SECONDS - 1;
    while (state.points.length && state.points[0].t < t0) state.points.shift();
    state.events = state.events.filter((e) => e.time_s >= t0);
    draw();
  } else if (data.type === "event") {
    state.events.push(data);
    const row = document.createElement("tr");
    row.className = "event";
    row.dataset.label = data.label;
    for (const text of [clock(data.time_s), data.label, data.score.toFixed(2)]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.appendChild(cell);
    }
    $("events").tBodies[0].prepend(row);
    draw();
  } else if (data.type === "ready") {
    setStatus("listening");
    showError("error", "");
    if (Math.abs(data.threshold - state.threshold) > 1e-9) {
      state.socket.send(JSON.stringify({ type: "threshold", value: state.threshold }));
    }
  } else if (data.type === "threshold") {
    setThreshold(data.value, false);
  } else if (data.type === "error") {
    showError("error", `server: ${data.message}`);
  }
}

// -- listening -----------------------------------------------------------------------------

async function start() {
  showError("error", "");
  if (!navigator.mediaDevices || !window.AudioWorkletNode) {
    showError("error", "this page needs a secure origin (https, localhost or 127.0.0.1) " +
      "and a browser with AudioWorklet to use the microphone");
    return;
  }
  $("listen").disabled = true;
  setStatus("opening the microphone...");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false,
               autoGainControl: false },
    });
  } catch (err) {
    showError("error", `no microphone: ${err.message || err}`);
    setStatus("idle");
    $("listen").disabled = false;
    return;
  }
  const context = new AudioContext();
  state.audio = { context, stream, node: null }; // stop() releases them if the rest fails
  await context.audioWorklet.addModule("/static/worklet.js");
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "pcm-16k", {
    processorOptions: { targetRate: state.info.sample_rate, frameSamples: 1600 },
  });
  const mute = context.createGain();
  mute.gain.value = 0; // keeps the node pulled by the graph, plays nothing
  source.connect(node).connect(mute).connect(context.destination);
  await context.resume();

  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    socket.send(JSON.stringify({ type: "start", format: "int16",
                                 sample_rate: state.info.sample_rate }));
  };
  socket.onmessage = onMessage;
  socket.onclose = (e) => {
    if (state.socket === socket && state.listening) {
      showError("error", `connection closed (${e.code}${e.reason ? ": " + e.reason : ""})`);
      stop();
    }
  };
  node.port.onmessage = ({ data }) => {
    showLevel(data.rms, data.peak);
    if (socket.readyState !== WebSocket.OPEN) return;
    const pcm = new Int16Array(data.samples.length);
    data.samples.forEach((v, i) => {
      pcm[i] = Math.max(-32768, Math.min(32767, Math.round(v * 32768)));
    });
    socket.send(pcm.buffer);
  };
  state.socket = socket;
  state.audio.node = node;
  state.points = [];
  state.events = [];
  state.now = 0;
  state.listening = true;
  $("listen").textContent = "Stop";
  $("listen").classList.add("stop");
  $("listen").disabled = false;
  setStatus("connecting...");
}

function stop() {
  state.listening = false;
  if (state.socket) state.socket.close();
  if (state.audio) {
    state.audio.stream.getTracks().forEach((track) => track.stop());
    state.audio.context.close();
  }
  state.socket = null;
  state.audio = null;
  showLevel(0, 0);
  $("listen").textContent = "Start listening";
  $("listen").classList.remove("stop");
  setStatus("idle");
}

function showLevel(rms, peak) {
  const db = rms > 0 ? 20 * Math.log10(rms) : -Infinity;
  const fill = Math.max(0, Math.min(1, (db + 60) / 60));
  const bar = $("level-bar");
  bar.style.width = `${(100 * fill).toFixed(1)}%`;
  bar.className = peak >= 0.99 ? "clip" : db > -12 ? "hot" : "";
  $("level-db").textContent = Number.isFinite(db) ? `${db.toFixed(0)} dB` : "-inf dB";
}

// -- upload ----------------------------------------------------------------------------------

async function upload(event) {
  event.preventDefault();
  showError("upload-error", "");
  const file = $("file").files[0];
  if (!file) {
    showError("upload-error", "choose a file first");
    return;
  }
  const form = new FormData();
  form.append("file", file);
  form.append("threshold", String(state.threshold));
  $("upload-status").textContent = "transcribing...";
  const table = $("results");
  table.hidden = true;
  try {
    const response = await fetch("/api/transcribe", { method: "POST", body: form });
    const data = await response.json();
    if (!response.ok) {
      showError("upload-error", data.error || `HTTP ${response.status}`);
      $("upload-status").textContent = "";
      return;
    }
    const rows = data.results.map((r) => {
      const row = document.createElement("tr");
      const cells = r.kind === "clip"
        ? ["clip", r.label, r.score.toFixed(2),
           r.top.slice(1).map((t) => `${t.label} ${t.score.toFixed(2)}`).join(", ")]
        : [clock(r.time_s), r.label, r.score.toFixed(2),
           `${r.start_s.toFixed(2)}-${r.end_s.toFixed(2)} s`];
      for (const text of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      return row;
    });
    table.tBodies[0].replaceChildren(...rows);
    table.hidden = false;
    $("upload-status").textContent =
      `${data.file}: ${data.audio_s.toFixed(1)} s, ${data.results.length} result(s)`;
  } catch (err) {
    showError("upload-error", `upload failed: ${err}`);
    $("upload-status").textContent = "";
  }
}

$("listen").addEventListener("click", () => {
  if (state.listening) {
    stop();
    return;
  }
  start().catch((err) => {
    showError("error", `cannot start: ${err.message || err}`);
    stop();
    $("listen").disabled = false;
  });
});
$("threshold").addEventListener("input", (e) => setThreshold(Number(e.target.value), true));
$("upload-form").addEventListener("submit", upload);
window.addEventListener("resize", draw);
loadInfo().then(draw);
