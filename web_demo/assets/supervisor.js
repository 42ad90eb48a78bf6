// The supervisor page: the group's examinees, live, from the socket server's events.
//
// Where the list comes from: GET /api/v1/supervisor/snapshot (each examinee's connection,
// stage, answers held by the server, answers still only on the device, last save), then live
// events from the position it names, so nothing between the two is missed. Answer counts are
// not events: they are read again from the snapshot every COUNTS_EVERY_MS. If the snapshot
// cannot be had, the socket replays the event stream from its start (`lastPosition=0-0`).
import { $, api, both, clock, el, show, signInRefusal, timeOfDay } from "./common.js";

const LOGIN_KEY = "examsync-demo:supervisor";
const COUNTS_EVERY_MS = 5000;
const state = {
  session: null,
  examinees: new Map(), // examineeId -> row
  stage: null, // the plan's: {stageId, stageName, deadline}
  ended: false,
  position: null, // the last event position seen, to resume from
  socket: null,
  lastFrame: 0,
  heartbeat: { interval: 10, timeout: 5 },
  retry: 0,
};
window.examsyncDemo = { state };

const saved = JSON.parse(sessionStorage.getItem(LOGIN_KEY) ?? "null");
if (saved) signIn(saved);
else showLogin();

function showLogin(message = "") {
  const form = $("#login");
  form.planId.value ||= new URLSearchParams(location.search).get("plan") ?? "";
  $("#login-error").textContent = message;
  show(form, true);
  show($("#board"), false);
  form.onsubmit = (event) => {
    event.preventDefault();
    signIn({
      planId: form.planId.value.trim(),
      supervisorId: form.supervisorId.value.trim(),
      authCode: form.authCode.value,
    });
  };
}

async function signIn(creds) {
  try {
    state.session = await api("POST", "/api/v1/sessions", { json: creds });
  } catch (error) {
    sessionStorage.removeItem(LOGIN_KEY);
    const refusal = signInRefusal(error.code, error.details);
    return showLogin(
      refusal ?? both("로그인하지 못했습니다", "Could not sign in") + `: ${error.message}`,
    );
  }
  sessionStorage.setItem(LOGIN_KEY, JSON.stringify(creds));
  const { plan, groupId } = state.session;
  state.ended = plan.status === "completed";
  $("#title").textContent = `${both("감독", "Supervisor")} — ${plan.examName}`;
  $("#group").textContent = both("응시자", "Examinees") + (groupId ? ` (${groupId})` : "");
  show($("#login"), false);
  show($("#board"), true);
  $("#logout").onclick = () => {
    sessionStorage.removeItem(LOGIN_KEY);
    location.reload();
  };
  await loadSnapshot();
  connect();
  render();
  setInterval(refreshCounts, COUNTS_EVERY_MS);
}

async function loadSnapshot() {
  try {
    const snapshot = await api("GET", "/api/v1/supervisor/snapshot", {
      token: state.session.token,
    });
    for (const item of snapshot.examinees) {
      row(item.examineeId, {
        name: item.name ?? "",
        connection: item.connStatusCode ?? "—",
        since: item.lastActiveTime ?? null,
        stage: stageName(item.currentStage),
        answered: item.answered,
        pending: item.pending, // answers still only on the examinee's device (its SDK's report)
        lastSave: item.lastSaveTime,
        device: item.activeDevice ?? null,
        deviceSince: item.activeSince ?? null,
        locked: item.lockedUntil ?? null, // failed sign-ins locked them out until then
      });
    }
    state.position = snapshot.position;
    $("#source").textContent = both("서버 현황 + 실시간 이벤트", "Server snapshot + live events");
  } catch (error) {
    log(`snapshot: ${error.message}`);
    state.position ??= "0-0"; // no snapshot: rebuild the list from the whole event stream
    $("#source").textContent = both("실시간 이벤트로 구성한 목록", "List built from live events");
  }
}

// Only the counts: a connection state in a later snapshot may be older than a live event
// already shown (the event reached this page before the snapshot was read).
async function refreshCounts() {
  if (state.ended) return;
  try {
    const snapshot = await api("GET", "/api/v1/supervisor/snapshot", {
      token: state.session.token,
    });
    for (const item of snapshot.examinees) {
      row(item.examineeId, {
        answered: item.answered,
        pending: item.pending,
        lastSave: item.lastSaveTime,
      });
    }
    render();
  } catch (error) {
    console.info("examsync: snapshot refresh", error);
  }
}

function stageName(stageId) {
  const stage = (state.session.stages ?? []).find((s) => s.stageId === stageId);
  return stage?.stageName ?? stageId ?? "—";
}

function row(id, changes) {
  const stage = state.stage?.stageName ?? "—"; // the plan's, until the examinee's own is known
  const current = state.examinees.get(id) ?? { id, connection: "—", stage, alerts: [] };
  const next = { ...current, ...changes };
  state.examinees.set(id, next);
  return next;
}

// --- the socket ----------------------------------------------------------------------------

function connect() {
  // Nothing secret in the URL (a failed socket's URL is printed in the console, proxies log
  // it): the token, and where to resume, go in the first frame (docs/protocol.md).
  const socket = new WebSocket(state.session.socketUrl);
  state.socket = socket;
  state.lastFrame = Date.now();
  socket.onopen = () => {
    const auth = { type: "auth", token: state.session.token };
    if (state.position) auth.lastPosition = state.position;
    socket.send(JSON.stringify(auth));
  };
  socket.onmessage = ({ data }) => {
    state.lastFrame = Date.now();
    try {
      receive(socket, JSON.parse(data));
    } catch (error) {
      log(`bad frame: ${error}`);
    }
  };
  socket.onclose = () => {
    if (state.socket !== socket) return;
    state.socket = null;
    link("closed");
    // Back off: 1 s, 2 s, 4 s ... up to 15 s, with jitter, so a restarted server is not stormed.
    const delay = Math.min(15000, 1000 * 2 ** state.retry++) * (0.5 + Math.random() / 2);
    setTimeout(connect, delay);
  };
}

// The server pings every interval; silence for interval + timeout means the link is dead
// (a cable pulled makes no close event): drop it and reconnect.
setInterval(() => {
  const { interval, timeout } = state.heartbeat;
  if (state.socket && Date.now() - state.lastFrame > (interval + timeout) * 1000) {
    const dead = state.socket;
    state.socket = null; // its close event, when it comes, finds a newer socket and does nothing
    dead.close();
    connect();
  }
  renderClock();
}, 1000);

function receive(socket, frame) {
  if (frame.position) state.position = frame.position;
  switch (frame.type) {
    case "welcome": // the auth frame was accepted: live
      state.retry = 0;
      link("open");
      state.heartbeat = { interval: frame.pingInterval ?? 10, timeout: frame.pingTimeout ?? 5 };
      if (frame.position) state.position = frame.position;
      return;
    case "ping":
      socket.send(JSON.stringify({ type: "pong", ts: frame.ts }));
      return;
    case "examinee_connected":
    case "examinee_disconnected":
    case "examinee_lost":
      row(frame.examineeId, {
        connection: frame.status,
        since: frame.timestamp,
        reason: frame.reason ?? null,
        browser: frame.clientInfo?.browserInfo ?? null,
      });
      log(
        `${frame.examineeId} ${frame.status}${frame.reason ? ` (${frame.reason})` : ""}`,
        frame.timestamp,
      );
      break;
    case "stage_changed":
      if (frame.candidateId) {
        row(frame.candidateId, { stage: frame.stageName ?? "—" });
      } else {
        state.stage = frame;
        for (const id of state.examinees.keys()) row(id, { stage: frame.stageName ?? "—" });
      }
      log(`${both("단계", "stage")}: ${frame.stageName ?? "—"}`, frame.timestamp);
      break;
    case "device_active": // the examinee signed in on another device (under `single`: a takeover)
      row(frame.candidateId, { device: frame.deviceId, deviceSince: frame.since });
      log(
        `${frame.candidateId} ${both("기기 변경", "device")}: ${shortDevice(frame.deviceId)}` +
          (frame.policy === "single" ? ` (${both("이전 기기 중단", "previous device stopped")})` : ""),
        frame.since,
      );
      break;
    case "alert": {
      if (frame.kind === "locked_out" || frame.kind === "lockout_lifted") {
        const locked = frame.kind === "locked_out" ? frame.lockedUntil : null;
        row(frame.candidateId, { locked });
        log(`${frame.candidateId} ${lockLabel(locked)}`, frame.timestamp);
        break;
      }
      const examinee = row(frame.candidateId, {});
      examinee.alerts = [...examinee.alerts, `${frame.kind}: ${frame.error}`].slice(-3);
      log(`${both("경보", "alert")} ${frame.candidateId}: ${frame.kind}`, frame.timestamp);
      break;
    }
    case "exam_end":
      window.examsyncDemo.endedAt ??= Date.now(); // when this page heard (tests)
      state.ended = true;
      log(frame.message, frame.timestamp);
      break;
    case "reload_state":
      log(
        both(
          "놓친 이벤트를 다시 받을 수 없어 현황을 새로 읽습니다",
          "Missed events are gone; reloading the state",
        ),
      );
      loadSnapshot();
      break;
    case "resumed":
      break;
    case "error":
      log(`error: ${frame.error?.code}`);
      break;
    default:
      return;
  }
  render();
}

// --- the screen ----------------------------------------------------------------------------

function link(status) {
  const node = $("#link");
  show(node, true);
  node.dataset.status = status === "open" ? "synced" : "offline";
  node.textContent =
    status === "open"
      ? `● ${both("실시간 연결됨", "Live")}`
      : `○ ${both("재연결 중", "Reconnecting")}`;
}

function render() {
  show($("#ended"), state.ended);
  const rows = [...state.examinees.values()].sort((a, b) => a.id.localeCompare(b.id));
  $("#examinees").replaceChildren(...rows.map(examineeRow));
  const online = rows.filter((r) => r.connection === "CONNECTED").length;
  $("#counts").textContent = both(
    `${rows.length}명 중 ${online}명 연결`,
    `${online} of ${rows.length} connected`,
  );
  renderClock();
}

function examineeRow(examinee) {
  const since = examinee.since ? ` ${both("부터", "since")} ${timeOfDay(examinee.since)}` : "";
  return el(
    "tr",
    { "data-examinee": examinee.id },
    el("th", { scope: "row", text: `${examinee.id}${examinee.name ? ` ${examinee.name}` : ""}` }),
    el(
      "td",
      { class: "state", "data-state": examinee.connection },
      connectionLabel(examinee.connection),
      el("div", {
        class: "note",
        text: `${since}${examinee.reason ? ` (${examinee.reason})` : ""}`,
      }),
    ),
    el("td", {
      "data-device": examinee.device ?? "",
      text: examinee.device ? shortDevice(examinee.device) : "—",
      title: examinee.deviceSince
        ? `${examinee.device} ${both("부터", "since")} ${timeOfDay(examinee.deviceSince)}`
        : "",
    }),
    el("td", { text: examinee.stage }),
    el("td", {
      class: "num",
      "data-answered": examinee.answered ?? "",
      text: (examinee.answered ?? "—") + (examinee.pending ? ` (+${examinee.pending})` : ""),
      title: examinee.pending ? both("기기에만 있는 답안", "answers still only on the device") : "",
    }),
    el("td", { text: examinee.lastSave ? timeOfDay(examinee.lastSave) : "—" }),
    el(
      "td",
      { class: "alerts" },
      examinee.alerts.join("; "),
      isLocked(examinee) ? lockCell(examinee) : null,
    ),
  );
}

// --- sign-in lockouts: failed sign-ins locked an examinee out; the supervisor may lift it ---

function isLocked(examinee) {
  return examinee.locked != null && Date.parse(examinee.locked) > Date.now();
}

function lockLabel(locked) {
  return locked
    ? both(`로그인 잠김 (${timeOfDay(locked)}까지)`, `sign-in locked until ${timeOfDay(locked)}`)
    : both("로그인 잠금 해제됨", "sign-in unlocked");
}

function lockCell(examinee) {
  return el(
    "div",
    { class: "lockout", "data-locked-until": examinee.locked },
    lockLabel(examinee.locked) + " ",
    el("button", {
      type: "button",
      class: "secondary unlock",
      text: both("잠금 해제", "Unlock"),
      onclick: () => unlock(examinee.id),
    }),
  );
}

async function unlock(id) {
  try {
    const path = `/api/v1/supervisor/lockouts/${encodeURIComponent(id)}`;
    await api("DELETE", path, { token: state.session.token });
    row(id, { locked: null });
    log(`${id} ${lockLabel(null)}`);
  } catch (error) {
    log(`${id} ${both("잠금 해제 실패", "unlock failed")}: ${error.message}`);
  }
  render();
}

// Device ids are long random strings: the first characters tell two devices apart.
function shortDevice(id) {
  return id.length > 8 ? `${id.slice(0, 8)}…` : id;
}

function connectionLabel(status) {
  if (status === "CONNECTED") return `● ${both("연결됨", "Connected")}`;
  if (status === "DISCONNECTED") return `○ ${both("연결 끊김", "Disconnected")}`;
  if (status === "LOST") return `✕ ${both("이탈", "Lost")}`;
  return status;
}

function renderClock() {
  const stage = state.stage;
  const node = $("#stage");
  if (state.ended) return void (node.textContent = both("종료", "Ended"));
  if (!stage?.stageName) return void (node.textContent = "");
  const left = stage.deadline ? (Date.parse(stage.deadline) - Date.now()) / 1000 : null;
  node.textContent =
    stage.stageName + (left == null ? "" : ` — ${clock(left)} ${both("남음", "left")}`);
}

function log(text, at = new Date().toISOString()) {
  const list = $("#log");
  list.prepend(el("li", { text: `${timeOfDay(at)} ${text}` }));
  while (list.children.length > 50) list.lastChild.remove();
}
