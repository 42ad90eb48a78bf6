// The candidate page: sign in, answer, see what is saved. The examsync SDK runs in Pyodide
// (candidate_page.py); this file only draws what it reports and hands it the answers.
import { bootSdk } from "./boot.js";
import { Camera } from "./camera.js";
import {
  $,
  age,
  both,
  clock,
  el,
  sha256Hex,
  show,
  signInRefusal,
  timeOfDay,
  api,
} from "./common.js";
import { TabRelay } from "./tabs.js";

const SAVE_DELAY_MS = 300; // typing is saved after this pause (and at once on leaving a field)

const state = {
  role: null, // "leader": this tab writes; "follower": another tab does (tabs.js)
  page: null, // the Python CandidatePage, in the leader
  relay: null,
  creds: null,
  session: null, // what POST /api/v1/sessions answered (cached by the SDK for offline use)
  token: null,
  candidateId: null,
  examCode: null,
  title: "",
  questions: [],
  answers: {}, // quizCode -> {value, version}
  stage: null, // {stageId, stageName, examCode, deadline, planStatus, candidateStatus, seenAt}
  sync: null,
  storage: null,
  ended: null,
  camera: null,
  device: null, // {deviceId, since, policy, thisDevice, replaced}: the candidate's active device
  conflicts: {}, // quizCode -> {lostValue, value}: this device's edits another device's replaced
};
// What a follower tab is sent of the leader's state (not its token, SDK handle or camera).
const SHARED = [
  "session",
  "candidateId",
  "examCode",
  "title",
  "questions",
  "answers",
  "stage",
  "sync",
  "storage",
  "ended",
  "device",
  "conflicts",
];
const typing = new Map(); // quizCode -> timer of an edit not handed over yet
let cameraReport = () => {}; // shows what became of each capture (set by startCamera)
let lastQuestion = null;

const sdk = bootSdk();
window.examsyncDemo = { sdk, state };

// --- start-up ----------------------------------------------------------------------------

if ("serviceWorker" in navigator) {
  // The worker keeps this page, Pyodide and the wheel so that a reload works offline (sw.js).
  navigator.serviceWorker.register("/sw.js", { scope: "/candidate" }).catch((error) => {
    console.warn("service worker not registered:", error);
  });
}

sdk.then(
  () => state.creds || show($("#boot"), false), // while signing in, that message stays
  (error) => {
    $("#boot").textContent =
      both("Python을 불러오지 못했습니다", "Could not load Python") + `: ${error}`;
    $("#boot").dataset.kind = "error";
  },
);

const saved = JSON.parse(sessionStorage.getItem("examsync-demo:login") ?? "null");
if (saved) signIn(saved);
else showLogin();

function showLogin(message = "") {
  const form = $("#login");
  const params = new URLSearchParams(location.search);
  form.planId.value ||= params.get("plan") ?? localStorage.getItem("examsync-demo:plan") ?? "";
  $("#login-error").textContent = message;
  show(form, true);
  for (const radio of form.querySelectorAll("[name=method]")) {
    radio.onchange = () => {
      for (const part of form.querySelectorAll("[data-method]")) {
        show(part, part.dataset.method === form.method.value);
      }
    };
  }
  form.onsubmit = (event) => {
    event.preventDefault();
    const byKey = form.method.value === "key";
    signIn({
      planId: form.planId.value.trim(),
      candidateId: byKey ? undefined : form.candidateId.value.trim(),
      authCode: byKey ? undefined : form.authCode.value,
      key: byKey ? form.key.value : undefined,
    });
  };
}

async function signIn(creds) {
  state.creds = creds;
  show($("#login"), false);
  $("#boot").textContent = both("로그인 중…", "Signing in…");
  show($("#boot"), true);
  // Tabs with the same credentials share a channel; its name does not reveal them.
  const identity = await sha256Hex(new TextEncoder().encode(JSON.stringify(creds)));
  state.relay = new TabRelay(`examsync-demo:${identity}`, {
    onSnapshot: follow,
    onEvent: handle,
  });
  const { module } = await sdk;
  const page = module.CandidatePage(location.origin, creds.planId, (text) => {
    const event = JSON.parse(text);
    handle(event);
    state.relay.broadcast(event);
  });
  const examKey = `examsync-demo:exam:${creds.planId}`;
  let result;
  try {
    // Waits as long as another tab of this candidate writes (meanwhile this tab follows it).
    result = JSON.parse(
      await page.login(
        creds.candidateId,
        creds.authCode,
        creds.key,
        localStorage.getItem(examKey) ?? "",
      ),
    );
  } catch (error) {
    state.relay.close();
    sessionStorage.removeItem("examsync-demo:login");
    show($("#boot"), false);
    showLogin(both("로그인하지 못했습니다", "Could not sign in") + `: ${pythonMessage(error)}`);
    return;
  }
  if (result.refused) {
    state.relay.close();
    sessionStorage.removeItem("examsync-demo:login");
    show($("#boot"), false);
    showLogin(signInRefusal(result.refused.code, result.refused));
    return;
  }
  sessionStorage.setItem("examsync-demo:login", JSON.stringify(creds));
  localStorage.setItem("examsync-demo:plan", creds.planId);
  localStorage.setItem(examKey, result.examCode);
  state.page = page;
  window.examsyncDemo.page = page;
  await lead(result);
}

// This tab holds the candidate's store: it shows its own state and serves other tabs.
async function lead(result) {
  const { page } = state;
  state.session = result.session;
  state.token = result.token;
  state.candidateId = result.candidateId;
  state.examCode = result.examCode;
  state.answers = result.answers;
  state.conflicts = result.conflicts;
  state.device = result.device;
  state.sync = JSON.parse(page.sync_state());
  state.stage = newestStage(stageFromSession(result.session));
  if (result.session.progress?.planStatus === "completed") state.ended ??= { message: "" };
  const plan = result.session.plan ?? {};
  try {
    const paper = JSON.parse(await page.questions(plan.shuffleQuestions, plan.shuffleAnswers));
    state.title = paper.title;
    state.questions = paper.questions;
  } catch (error) {
    $("#boot").textContent =
      both("시험지를 불러오지 못했습니다", "Could not load the paper") +
      `: ${pythonMessage(error)}`;
    return;
  }
  state.role = "leader";
  show($("#boot"), false);
  render();
  await state.relay.lead({
    snapshot: () => Object.fromEntries(SHARED.map((key) => [key, state[key]])),
    apply: async (quizCode, value) => {
      const version = await page.answer(quizCode, value);
      answered(quizCode, value, version);
      return version;
    },
  });
  if (plan.requiresCamera && !state.ended) startCamera(plan.cameraCaptureInterval);
}

// Another tab writes: show what it shows, and send the edits there.
function follow(snapshot) {
  if (state.role === "leader") return;
  const first = state.role === null;
  Object.assign(state, snapshot, { role: "follower" });
  if (first) show($("#boot"), false);
  render();
}

// --- events (this tab's SDK, or the leader's relayed) --------------------------------------

function handle(event) {
  switch (event.type) {
    case "sync":
      state.sync = event;
      // An edit or a dismissal (in any tab) settles a conflict: keep only those still open.
      state.conflicts = Object.fromEntries(
        Object.entries(state.conflicts ?? {}).filter(([code]) => event.overridden?.includes(code)),
      );
      renderConflicts();
      renderSync();
      renderEnded();
      break;
    case "storage":
      state.storage = event;
      renderStorage();
      break;
    case "exam_end":
      window.examsyncDemo.endedAt ??= Date.now(); // when this page heard (tests, bench)
      state.ended = event;
      state.stage = newestStage({ ...state.stage, planStatus: "completed", seenAt: Date.now() });
      state.camera?.stop();
      renderStage();
      break;
    case "stage_changed":
      if (event.candidateId && event.candidateId !== state.candidateId) break;
      state.stage = newestStage({
        stageId: event.stageId,
        stageName: event.stageName,
        examCode: event.examCode,
        deadline: event.deadline,
        planStatus: "in_progress",
        candidateStatus: event.stageId ? "in_progress" : "completed",
        seenAt: Date.now(),
      });
      renderStage();
      break;
    case "progress": // the server could not replay missed events: its progress now replaces them
      state.stage = newestStage({
        ...stageFromSession({ ...state.session, progress: event.progress }),
        seenAt: Date.now(),
      });
      if (event.progress.planStatus === "completed") state.ended ??= { message: "" };
      renderStage();
      break;
    case "answer": // the leader stored an edit (any tab's)
      answered(event.quizCode, event.value, event.version, false);
      break;
    case "device": // another device of this candidate signed in (or this one took over again)
      state.device = event;
      renderDevice();
      break;
    case "overridden": // another device's later edit won: show the server's value, and what was lost
      state.conflicts[event.quizCode] = { lostValue: event.lostValue, value: event.value };
      renderConflicts();
    // falls through
    case "restore": // the server's answers were merged in: show the result, in every tab
      if (state.page) {
        state.answers = JSON.parse(state.page.answers());
        renderAnswers();
        state.relay.broadcast({ type: "answers", answers: state.answers });
      }
      break;
    case "answers":
      state.answers = event.answers;
      renderAnswers();
      break;
    case "conflicts": // the leader's list after a dismissal or a takeover
      state.conflicts = event.conflicts;
      renderConflicts();
      break;
    case "upload":
      if (event.kind === "capture") cameraReport(event);
      break;
    case "failure":
    case "alert":
      console.info("examsync:", event);
      break;
  }
}

// An edit is stored (in this tab, or the leader's): keep it, show it, tell the other tabs.
function answered(quizCode, value, version, broadcast = true) {
  state.answers[quizCode] = { value, version };
  const field = document.querySelector(`[data-quiz="${CSS.escape(quizCode)}"]`);
  if (field) fill(field, value);
  if (broadcast) state.relay.broadcast({ type: "answer", quizCode, value, version });
}

// --- answering -----------------------------------------------------------------------------

function edit(quizCode, value) {
  clearTimeout(typing.get(quizCode));
  typing.delete(quizCode);
  if (state.answers[quizCode]?.value === value) return;
  if (state.role === "leader") {
    state.answers[quizCode] = { value }; // no version until it is stored
    state.page.answer(quizCode, value).then(
      (version) => answered(quizCode, value, version),
      (error) => console.warn("answer kept in memory only:", pythonMessage(error)),
    );
  } else {
    state.relay.edit(quizCode, value);
  }
}

function editSoon(quizCode, value) {
  clearTimeout(typing.get(quizCode));
  typing.set(
    quizCode,
    setTimeout(() => edit(quizCode, value), SAVE_DELAY_MS),
  );
}

function flushTyping() {
  for (const field of document.querySelectorAll("[data-quiz]")) {
    if (typing.has(field.dataset.quiz)) edit(field.dataset.quiz, valueOf(field));
  }
}

function noteFocus(quizCode) {
  if (state.role === "leader" && lastQuestion && lastQuestion !== quizCode) {
    state.page.navigate(lastQuestion, quizCode);
  }
  lastQuestion = quizCode;
}

// Focus time and keystrokes ride along with the next save (the SDK counts edits itself).
let keystrokes = 0;
let focusMs = 0;
document.addEventListener("keydown", (event) => {
  if (event.target.closest?.("[data-quiz]")) keystrokes += 1;
});
setInterval(() => {
  if (document.hasFocus()) focusMs += 1000;
  if (state.role === "leader" && (keystrokes || focusMs >= 5000)) {
    state.page.behavior(focusMs, keystrokes);
    keystrokes = 0;
    focusMs = 0;
  }
  renderSync();
  renderClock();
}, 1000);

addEventListener("pagehide", flushTyping);
addEventListener("beforeunload", (event) => {
  flushTyping();
  const unsynced = (state.sync?.pending ?? 0) + (state.relay?.unconfirmed.size ?? 0);
  if (unsynced > 0) {
    // The answers are on this device and go out on the next visit, but warn all the same.
    event.preventDefault();
    event.returnValue = "";
  }
});
// What the proctor may want to know of the page itself goes to the server's log queue.
function pageLog(event, level = "info", data = {}) {
  if (state.role === "leader") state.page.log(event, level, JSON.stringify(data));
}
document.addEventListener("visibilitychange", () =>
  document.hidden ? pageLog("page_hidden", "warning") : pageLog("page_visible"),
);
addEventListener("online", () => {
  pageLog("network_online");
  renderSync();
});
addEventListener("offline", () => {
  pageLog("network_offline", "warning");
  renderSync();
});

// --- the screen ----------------------------------------------------------------------------

function render() {
  $("#exam-title").textContent = state.session?.plan?.examName ?? "examsync";
  $("#paper-title").textContent = state.title;
  renderQuestions();
  renderStage();
  renderSync();
  renderStorage();
  renderDevice();
  show($("#follower"), state.role === "follower");
}

function renderQuestions() {
  const list = $("#questions");
  if (list.dataset.exam !== state.examCode) {
    list.dataset.exam = state.examCode;
    list.replaceChildren(...state.questions.map(questionItem));
  }
  renderAnswers();
  renderConflicts();
}

function questionItem(question, index) {
  const code = question.quizCode;
  const id = `q-${code}`;
  const item = el("li", { class: "question", id: `item-${code}` });
  item.append(
    el("p", { class: "prompt", id: `${id}-prompt`, text: `${index + 1}. ${question.prompt}` }),
  );
  let field;
  if (question.type === "choice") {
    field = el("fieldset", { "data-quiz": code, "aria-labelledby": `${id}-prompt` });
    for (const choice of question.choices) {
      const input = el("input", { type: "radio", name: id, value: choice.id });
      input.addEventListener("change", () => edit(code, choice.id));
      field.append(el("label", { class: "choice" }, input, ` ${choice.text}`));
    }
  } else {
    const multiline = question.type === "text";
    field = el(multiline ? "textarea" : "input", {
      "data-quiz": code,
      "aria-labelledby": `${id}-prompt`,
      maxlength: question.maxLength ?? 10000,
      rows: multiline ? 4 : undefined,
      inputmode: question.type === "number" ? "numeric" : undefined,
      autocomplete: "off",
    });
    field.addEventListener("input", () => editSoon(code, field.value));
    field.addEventListener("blur", () => typing.has(code) && edit(code, field.value));
  }
  field.addEventListener("focusin", () => noteFocus(code));
  item.append(field, el("div", { class: "conflict", "data-conflict": code, hidden: true }));
  return item;
}

// An edit of this device that a later edit on another device replaced: say so, with both
// values, until the candidate has seen it (or edits the answer again).
function renderConflicts() {
  for (const box of document.querySelectorAll("[data-conflict]")) {
    const code = box.dataset.conflict;
    const conflict = state.conflicts?.[code];
    show(box, Boolean(conflict));
    if (!conflict) continue;
    const question = state.questions.find((q) => q.quizCode === code) ?? {};
    const lost = shownValue(question, conflict.lostValue);
    const kept = shownValue(question, conflict.value);
    box.replaceChildren(
      el("p", {
        role: "alert",
        text:
          both(
            `다른 기기에서 나중에 입력한 답안(${kept})이 저장되었습니다. 이 기기에서 입력한 답안(${lost})은 저장되지 않았습니다.`,
            `A later answer from another device (${kept}) was kept. What you entered here (${lost}) was not saved.`,
          ),
      }),
      el("button", {
        type: "button",
        class: "secondary",
        text: both("확인", "OK"),
        hidden: state.role !== "leader",
        onclick: () => dismissConflict(code),
      }),
    );
  }
}

function shownValue(question, value) {
  if (value === "") return both("빈 답안", "empty");
  const choice = (question.choices ?? []).find((c) => c.id === value);
  const text = choice ? choice.text : value;
  return `“${text.length > 60 ? `${text.slice(0, 60)}…` : text}”`;
}

function dismissConflict(code) {
  state.page.dismiss_conflict(code);
  delete state.conflicts[code];
  renderConflicts();
  state.relay.broadcast({ type: "conflicts", conflicts: state.conflicts });
}

// Under `single`, another device's sign-in replaces this one: its answers are no longer
// taken, so the questions are locked until the candidate continues here (a new sign-in).
function renderDevice() {
  const device = state.device;
  const replaced = Boolean(device?.replaced && !device.thisDevice);
  show($("#replaced"), replaced);
  show($("#continue-here"), state.role === "leader");
  show($("#elsewhere"), Boolean(device && !device.thisDevice && !device.replaced));
  $("#continue-here").onclick = continueHere;
  renderStage();
}

async function continueHere() {
  const button = $("#continue-here");
  button.disabled = true;
  $("#continue-error").textContent = "";
  try {
    const result = JSON.parse(await state.page.take_over());
    state.device = result.device;
    state.answers = result.answers;
    state.conflicts = result.conflicts;
    renderAnswers();
    renderConflicts();
    renderDevice();
    state.relay.broadcast({ type: "device", ...state.device });
    state.relay.broadcast({ type: "answers", answers: state.answers });
    state.relay.broadcast({ type: "conflicts", conflicts: state.conflicts });
  } catch (error) {
    // Offline, or refused: the exam stays on the other device until a retry succeeds.
    $("#continue-error").textContent =
      both("이 기기에서 계속하지 못했습니다", "Could not continue on this device") +
      `: ${pythonMessage(error)}`;
  } finally {
    button.disabled = false;
  }
}

function valueOf(field) {
  if (field.tagName === "FIELDSET") return field.querySelector("input:checked")?.value ?? "";
  return field.value;
}

function fill(field, value) {
  if (field.tagName === "FIELDSET") {
    for (const input of field.querySelectorAll("input")) input.checked = input.value === value;
  } else if (document.activeElement !== field || !typing.has(field.dataset.quiz)) {
    field.value = value; // not while the candidate is typing in it
  }
}

function renderAnswers() {
  for (const field of document.querySelectorAll("[data-quiz]")) {
    const answer = state.answers[field.dataset.quiz];
    if (answer) fill(field, answer.value);
  }
}

function renderSync() {
  const node = $("#sync");
  const sync = state.sync;
  const offline = !navigator.onLine || sync?.status === "offline";
  show($("#offline"), Boolean(state.role) && offline);
  if (!sync) return;
  show(node, true);
  node.dataset.status = sync.status;
  node.dataset.pending = sync.pending;
  const waited =
    sync.oldestPendingAge == null ? null : Date.now() / 1000 - (sync.at - sync.oldestPendingAge);
  const oldest = waited == null ? "" : ` (${both("가장 오래된 것", "oldest")} ${age(waited)})`;
  const pending = both(`${sync.pending}개 전송 대기`, `${sync.pending} pending`) + oldest;
  node.textContent = {
    synced:
      `✓ ${both("모두 저장됨", "All saved")}` +
      (sync.lastAckAt ? ` ${timeOfDay(sync.lastAckAt)}` : ""),
    pending: `… ${pending}`,
    offline: `⚠ ${both("오프라인", "Offline")} — ${pending}`,
    error: `⚠ ${both("서버가 거부함, 재시도 중", "Refused by the server, retrying")} — ${pending}`,
    replaced: `⚠ ${both("다른 기기에서 진행 중", "Continues on another device")} — ${pending}`,
  }[sync.status];
  const lost = sync.overridden?.length ?? 0;
  node.dataset.overridden = lost;
  if (lost) {
    node.textContent += ` — ${both(`${lost}개는 다른 기기의 답안으로 바뀜`, `${lost} replaced by another device`)}`;
  }
}

function renderStorage() {
  const storage = state.storage;
  const problem = storage && !storage.durable;
  show($("#storage"), Boolean(problem));
  if (problem) {
    $("#storage").textContent =
      both(
        "이 기기에 답안을 저장할 수 없습니다. 페이지를 닫지 마세요",
        "Answers cannot be stored on this device. Do not close this page",
      ) + (storage.error ? ` (${storage.error})` : "");
  }
}

function stageFromSession(session) {
  const progress = session.progress ?? {};
  const stage = (session.stages ?? []).find((s) => s.stageId === progress.currentStage) ?? {};
  return {
    stageId: progress.currentStage ?? null,
    stageName: stage.stageName ?? null,
    examCode: stage.examCode ?? null,
    deadline: progress.stageDeadline ?? null,
    planStatus: progress.planStatus ?? session.plan?.status,
    candidateStatus: progress.status,
    seenAt: Date.parse(session.serverTime) || 0,
  };
}

// The newest stage seen on this device: an offline reload has only the cached session,
// which may be older than the last stage_changed this device got.
function newestStage(candidate) {
  const key = `examsync-demo:stage:${state.creds.planId}:${state.candidateId}`;
  const stored = JSON.parse(localStorage.getItem(key) ?? "null");
  const newest = stored && stored.seenAt > candidate.seenAt ? stored : candidate;
  localStorage.setItem(key, JSON.stringify(newest));
  return newest;
}

function renderStage() {
  const stage = state.stage ?? {};
  const ended = Boolean(state.ended) || stage.planStatus === "completed";
  const started = stage.planStatus === "in_progress";
  const individualReady =
    state.session?.plan?.conductType === "individual" && stage.candidateStatus === "ready";
  const examNow = !ended && started && !individualReady && stage.examCode === state.examCode;
  show($("#exam"), examNow || ended);
  const replaced = Boolean(state.device?.replaced && !state.device.thisDevice);
  $("#questions").inert = !examNow || replaced;
  show($("#waiting"), !ended && !examNow && Boolean(state.role));
  show($("#start-individual"), started && individualReady && state.role === "leader");
  $("#start-individual").onclick = startIndividual;
  if (!started && !ended) {
    $("#waiting-title").textContent = both("시험 시작 전", "The exam has not started");
    $("#waiting-text").textContent = both(
      "감독관이 시험을 시작하면 자동으로 표시됩니다.",
      "It appears here when the exam starts.",
    );
  } else if (!examNow && !ended) {
    $("#waiting-title").textContent =
      stage.stageName ?? both("모든 단계 종료", "All stages are over");
    $("#waiting-text").textContent = both(
      "시험 문항은 시험 단계에서 표시됩니다.",
      "The questions appear in the exam stage.",
    );
  }
  show($("#ended"), ended);
  renderEnded();
  renderClock();
}

function renderEnded() {
  if (!state.ended && state.stage?.planStatus !== "completed") return;
  const pending = state.sync?.pending ?? 0;
  const text = $("#ended-text");
  text.dataset.pending = pending;
  text.textContent =
    `${state.ended?.message || "시험이 종료되었습니다."} ` +
    (pending
      ? both(`남은 답안 ${pending}개를 전송하는 중입니다.`, `Sending the last ${pending} answers.`)
      : both("모든 답안이 저장되었습니다.", "Every answer is saved."));
}

function renderClock() {
  const stage = state.stage;
  const node = $("#stage");
  if (!stage?.stageName) return void (node.textContent = "");
  const left = stage.deadline ? (Date.parse(stage.deadline) - Date.now()) / 1000 : null;
  node.dataset.stage = stage.stageId;
  node.textContent =
    `${stage.stageName}` + (left == null ? "" : ` — ${clock(left)} ${both("남음", "left")}`);
}

async function startIndividual() {
  try {
    const view = await api("POST", "/api/v1/me/start", { token: state.token });
    const stage = (state.session.stages ?? []).find((s) => s.stageId === view.currentStage) ?? {};
    state.stage = newestStage({
      stageId: view.currentStage,
      stageName: stage.stageName,
      examCode: stage.examCode,
      deadline: view.stageDeadline,
      planStatus: view.planStatus,
      candidateStatus: view.status,
      seenAt: Date.now(),
    });
    renderStage();
  } catch (error) {
    $("#waiting-text").textContent = `${error.message}`;
  }
}

function startCamera(interval) {
  show($("#camera"), true);
  const status = $("#camera-status");
  const stats = { taken: 0, stored: 0 };
  const report = (error = "") => {
    const waiting = state.page.uploads_pending();
    status.dataset.stored = stats.stored;
    status.textContent =
      both(
        `촬영 ${stats.taken}회, 전송 ${stats.stored}회`,
        `${stats.taken} taken, ${stats.stored} sent`,
      ) +
      (waiting ? ` — ${both(`${waiting}개 대기`, `${waiting} waiting`)}` : "") +
      (error ? ` — ${error}` : "");
  };
  cameraReport = (event) => {
    if (event.status === "stored" || event.status === "duplicate") stats.stored += 1;
    report(event.status === "refused" ? both("서버가 거부함", "refused by the server") : "");
  };
  const store = async (bytes, takenAt) => {
    await state.page.capture(bytes, takenAt);
    stats.taken += 1;
    report();
  };
  state.camera = new Camera($("#camera-video"), store, report);
  state.camera.start(interval);
}

function pythonMessage(error) {
  // A Python exception arrives as a PythonError whose message is the whole traceback.
  const lines = String(error?.message ?? error)
    .trim()
    .split("\n");
  return lines[lines.length - 1];
}
