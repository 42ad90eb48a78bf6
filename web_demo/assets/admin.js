// The admin page: the admin API (docs/server.md) behind buttons. Import a plan, upload its
// package, prepare, start, move the stage on, end; the status, dead letters and credentials.
import { $, api, both, el, say, sha256Hex, show, timeOfDay } from "./common.js";

const TOKEN_KEY = "examsync-demo:admin-token";
const signin = $("#signin");
const form = $("#access");
let token = sessionStorage.getItem(TOKEN_KEY) ?? "";
let currentStage = null; // from the last status: a repeated "next stage" click moves once

// The token is typed or pasted into the sign-in form and kept in this tab's sessionStorage
// only: a URL (an older `#token=` link) would keep it in the history, so it is dropped unread.
if (new URLSearchParams(location.hash.slice(1)).has("token")) {
  history.replaceState(null, "", location.pathname + location.search);
}
form.planId.value =
  new URLSearchParams(location.search).get("plan") ??
  localStorage.getItem("examsync-demo:admin-plan") ??
  "";

const admin = (method, path, options = {}) =>
  api(method, `/api/v1/admin/plans/${encodeURIComponent(form.planId.value.trim())}${path}`, {
    ...options,
    token,
  });

function signedIn(value) {
  token = value;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  signin.token.value = "";
  show(signin, !token);
  show($("#workspace"), Boolean(token));
  if (!token) {
    // what the token showed (auth codes, access keys) goes with it
    for (const id of ["#facts", "#dead-letters", "#candidates"]) $(id).replaceChildren();
    for (const id of ["#plan-status", "#dead-summary", "#result"]) $(id).textContent = "";
    $("#plan-status").dataset.status = "";
  }
}

signin.onsubmit = async (event) => {
  event.preventDefault();
  const typed = signin.token.value.trim();
  try {
    // Any admin path checks the token first: the page's plan (a 404 when it does not exist
    // yet still means "valid"), so the usual sign-in leaves no failed request in the console.
    const plan = encodeURIComponent(form.planId.value.trim() || "-");
    await api("GET", `/api/v1/admin/plans/${plan}`, { token: typed });
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      say($("#signin-result"), both("토큰이 맞지 않습니다", "The token is not valid"), "error");
      return;
    }
  }
  say($("#signin-result"), "");
  signedIn(typed);
  refresh();
};

$("#signout").onclick = () => signedIn("");

form.onsubmit = (event) => {
  event.preventDefault();
  localStorage.setItem("examsync-demo:admin-plan", form.planId.value.trim());
  refresh();
};

// Every button reports into one status line; the page then re-reads the status.
async function run(label, work) {
  const result = $("#result");
  say(result, `${label}…`);
  try {
    const body = await work();
    say(result, `${label}: ${both("완료", "done")} ${summary(body)}`, "ok");
  } catch (error) {
    say(result, `${label}: ${error.code ?? ""} ${error.message}`, "error");
  }
  await refresh();
}

function summary(body) {
  if (!body) return "";
  const facts = [
    "status",
    "currentStage",
    "alreadyStarted",
    "alreadyCompleted",
    "sha256",
    "replayed",
  ];
  return facts
    .filter((k) => body[k] !== undefined)
    .map((k) => `${k}=${JSON.stringify(body[k])}`)
    .join(" ");
}

$("#import").onclick = () =>
  run(both("계획 가져오기", "Import plan"), async () => {
    const file = $("#plan-file").files[0];
    if (!file) throw new Error(both("계획 파일을 고르세요", "Choose a plan file"));
    const plan = JSON.parse(await file.text());
    if (plan.exam_plan?.plan_id) form.planId.value = plan.exam_plan.plan_id;
    return admin("PUT", "", { json: plan });
  });

$("#upload").onclick = () =>
  run(both("패키지 올리기", "Upload package"), async () => {
    const file = $("#package-file").files[0];
    if (!file) throw new Error(both("패키지 파일을 고르세요", "Choose a package file"));
    const bytes = new Uint8Array(await file.arrayBuffer());
    return admin("PUT", "/package", {
      body: bytes,
      headers: { "Content-Type": "application/zip", "X-Content-SHA256": await sha256Hex(bytes) },
    });
  });

for (const button of document.querySelectorAll("[data-action]")) {
  button.onclick = () => {
    const action = button.dataset.action;
    if (
      action === "end" &&
      !confirm(
        both(
          "시험을 종료할까요? 모든 응시자에게 즉시 알립니다.",
          "End the exam? Every candidate is told at once.",
        ),
      )
    )
      return;
    const body = action === "advance" && currentStage ? { json: { fromStage: currentStage } } : {};
    run(button.textContent, () => admin("POST", `/${action}`, body));
  };
}

$("#replay").onclick = () =>
  run(both("재처리", "Replay"), () => admin("POST", "/dead-letters/replay", { json: {} }));

async function refresh() {
  if (!token || !form.planId.value) return;
  let status;
  try {
    status = await admin("GET", "");
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      signedIn(""); // the token stopped working (the server's changed): sign in again
      say($("#signin-result"), both("다시 로그인하세요", "Sign in again"), "error");
      return;
    }
    $("#plan-status").textContent =
      error.status === 404 ? both("계획 없음", "No such plan") : error.message;
    $("#plan-status").dataset.status = "";
    $("#facts").replaceChildren();
    return;
  }
  currentStage = status.currentStage;
  $("#plan-status").textContent = `${status.planId}: ${status.status}`;
  $("#plan-status").dataset.status = status.status;
  const stage = status.stages.find((s) => s.stageId === status.currentStage);
  const byStatus = Object.entries(status.counts.candidatesByStatus)
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");
  facts([
    [both("시험명", "Exam"), status.examName],
    [both("상태", "Status"), status.status],
    [both("현재 단계", "Stage"), stage ? `${stage.stageName} (${stage.stageId})` : "—"],
    [
      both("단계 마감", "Stage deadline"),
      status.stageDeadline ? timeOfDay(status.stageDeadline) : "—",
    ],
    [both("응시자", "Candidates"), `${status.counts.candidates} (${byStatus || "—"})`],
    [both("감독관", "Supervisors"), status.counts.supervisors],
    [
      both("패키지", "Package"),
      status.package ? `${status.package.sha256.slice(0, 12)}… ${status.package.size} B` : "—",
    ],
    [
      both("대기열", "Queues"),
      status.queues
        ? Object.entries(status.queues)
            .map(([k, n]) => `${k} ${n}`)
            .join(", ")
        : "—",
    ],
    [both("실패한 처리", "Dead letters"), status.deadLetters],
  ]);
  await Promise.all([deadLetters(), candidates()]);
}

function facts(pairs) {
  $("#facts").replaceChildren(
    ...pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]),
  );
}

async function deadLetters() {
  const { deadLetters: letters } = await admin("GET", "/dead-letters");
  const open = letters.filter((d) => !d.replayedAt);
  $("#dead-summary").textContent = both(
    `재처리 대기 ${open.length}건`,
    `${open.length} waiting for replay`,
  );
  $("#dead-letters").replaceChildren(
    ...letters.map((d) =>
      el(
        "tr",
        {},
        ...[d.id, d.stream, d.candidateId ?? "—", d.error, timeOfDay(d.createdAt)].map((v) =>
          el("td", { text: String(v) }),
        ),
      ),
    ),
  );
}

async function candidates() {
  const { candidates: people } = await admin("GET", "/candidates");
  $("#candidates").replaceChildren(
    ...people.map((c) =>
      el(
        "tr",
        {},
        ...[
          c.candidate_id,
          c.candidate_name,
          c.group_id,
          c.candidate_auth_code,
          c.access_key ?? "—",
          c.status,
        ].map((v) => el("td", { text: String(v) })),
      ),
    ),
  );
}

signedIn(token);
refresh();
setInterval(() => {
  if (!document.hidden) refresh();
}, 3000);
