// The page: sign in, choose a photo, follow its job live, compare, download, cancel, retry, and the
// history. Everything goes through the public API (api.js, live.js), as any client's would.

import { Api, ApiError, newIdempotencyKey } from "./api.js";
import { SignInError, startSession } from "./auth.js";
import { History } from "./history.js";
import { Live } from "./live.js";
import { browserShows, humanBytes, sniffFormat } from "./photo.js";
import { statusText } from "./status.js";

const $ = (id) => document.getElementById(id);
const ACTIVE = new Set(["PENDING", "PROCESSING"]);

const state = {
  config: null,
  api: null,
  live: null,
  history: null,
  chosen: null, // {file, format} picked and not yet sent
  previewUrl: null,
  files: new Map(), // job id → the File it was submitted from (retry sends it again)
  job: null, // the job on screen
  stopWatching: () => {},
};

function show(element, text) {
  element.textContent = text;
  element.hidden = !text;
}

// -- choosing a photo -------------------------------------------------------------------------

async function choose(file) {
  show($("submit-error"), "");
  state.chosen = null;
  $("restore").disabled = true;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = null;
  $("chosen-preview").hidden = true;
  $("chosen-name").textContent = file.name;
  const format = file.size > 0 ? await sniffFormat(file) : null;
  if (!format) {
    show($("submit-error"), `“${file.name}” is not a photo the service can read. Choose a JPEG, PNG, HEIC or WebP image.`);
    return;
  }
  if (file.size > state.config.maxUploadBytes) {
    show($("submit-error"), `“${file.name}” is too large (${humanBytes(file.size)}): the limit is ${humanBytes(state.config.maxUploadBytes)}.`);
    return;
  }
  if (format !== "heic") {
    state.previewUrl = URL.createObjectURL(file);
    $("chosen-preview").src = state.previewUrl;
    $("chosen-preview").hidden = false;
  }
  state.chosen = { file, format };
  $("restore").disabled = false;
}

function setUpChoosing() {
  const drop = $("drop");
  $("file").addEventListener("change", () => $("file").files[0] && choose($("file").files[0]));
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const [file] = event.dataTransfer.files;
    if (file) choose(file);
  });
  const slider = $("denoise");
  const update = () => ($("denoise-value").value = Number(slider.value).toFixed(2));
  slider.addEventListener("input", update);
  $("denoise-reset").addEventListener("click", () => {
    slider.value = state.config.defaultDenoise;
    update();
  });
  slider.value = state.config.defaultDenoise;
  update();
  $("max-size").textContent = humanBytes(state.config.maxUploadBytes);
  $("restore").addEventListener("click", () => state.chosen && submit(state.chosen.file, state.chosen.format, Number(slider.value)));
}

// -- submitting and following a job -------------------------------------------------------------

async function submit(file, format, denoise) {
  show($("submit-error"), "");
  $("restore").disabled = true;
  state.stopWatching();
  state.job = null;
  $("job").hidden = false;
  for (const id of ["job-progress", "compare", "download", "cancel", "retry"]) $(id).hidden = true;
  show($("job-error"), "");
  show($("job-status"), `Uploading ${humanBytes(file.size)}…`);
  $("upload-progress").hidden = false;
  $("upload-bar").value = 0;
  try {
    const job = await state.api.submit(file, {
      format,
      denoise,
      idempotencyKey: newIdempotencyKey(), // one per press of Restore or Try again
      onProgress: (fraction) => ($("upload-bar").value = fraction),
    });
    state.files.set(job.id, file);
    state.history.upsert(job);
    openJob(job);
  } catch (error) {
    $("job").hidden = true;
    show($("submit-error"), messageOf(error));
  } finally {
    $("upload-progress").hidden = true;
    $("restore").disabled = state.chosen === null;
  }
}

function openJob(job) {
  state.stopWatching();
  state.history.markCurrent(job.id);
  $("job").hidden = false;
  $("upload-progress").hidden = true;
  render(job);
  state.stopWatching = state.live.watchJob(job.id, {
    onJob: (update) => {
      state.history.upsert(update);
      render(update);
    },
    onError: (message) => show($("job-error"), message),
  });
}

function render(job) {
  state.job = job;
  $("job-status").textContent = statusText(job);
  $("job-status").dataset.status = job.status;
  const running = job.status === "PROCESSING";
  $("job-progress").hidden = !running;
  if (running && job.progress !== null && job.progress !== undefined) $("job-bar").value = job.progress;
  else $("job-bar").removeAttribute("value"); // indeterminate until the engine reports progress
  show($("job-error"), job.status === "FAILED" ? job.errorMessage || "The service could not restore this photo." : "");
  $("cancel").hidden = !ACTIVE.has(job.status);
  $("cancel").disabled = false;
  $("retry").hidden = !(job.status === "FAILED" && job.retryable);
  const done = job.status === "COMPLETED" && job.processedImageUrl;
  $("compare").hidden = !done;
  $("download").hidden = !done;
  if (done) showResult(job);
}

function showResult(job) {
  if ($("after").dataset.jobId === job.id) return; // already shown; a newer signed URL changes nothing
  $("after").dataset.jobId = job.id;
  $("after").src = job.processedImageUrl;
  const shows = browserShows(job.originalImageUrl);
  $("before-clip").hidden = !shows;
  $("before-missing").hidden = shows;
  if (shows) $("before").src = job.originalImageUrl;
  else $("before").removeAttribute("src");
  $("download").href = job.processedImageUrl;
  $("download").download = `restored-${job.id}.png`;
}

function setUpJobPanel() {
  $("compare-slider").addEventListener("input", (event) => {
    $("before-clip").style.setProperty("--cut", `${event.target.value}%`);
  });
  $("cancel").addEventListener("click", async () => {
    if (!state.job) return;
    $("cancel").disabled = true;
    try {
      render(await state.api.cancel(state.job.id)); // a running job says so until it has stopped
    } catch (error) {
      show($("job-error"), messageOf(error));
      $("cancel").disabled = false;
    }
  });
  $("retry").addEventListener("click", async () => {
    const job = state.job;
    if (!job) return;
    $("retry").disabled = true;
    try {
      const file = state.files.get(job.id) ?? (await originalOf(job));
      await submit(file, await sniffFormat(file), job.denoise);
    } catch (error) {
      show($("job-error"), messageOf(error));
    } finally {
      $("retry").disabled = false;
    }
  });
}

/** The photo of a job from an earlier visit, fetched back from its (signed) original URL. */
async function originalOf(job) {
  const response = await fetch(job.originalImageUrl).catch(() => null);
  if (!response?.ok) throw new ApiError("The original photo could not be fetched again; choose it once more.");
  const name = new URL(job.originalImageUrl, location.href).pathname.split("/").pop();
  return new File([await response.blob()], name);
}

function messageOf(error) {
  return error instanceof ApiError || error instanceof SignInError ? error.message : "Something went wrong. Please try again.";
}

// -- start ----------------------------------------------------------------------------------------

async function start() {
  try {
    const response = await fetch("/web/config.json");
    state.config = await response.json();
  } catch {
    show($("notice"), "The service is unavailable at the moment. Please reload in a minute.");
    return;
  }
  let session;
  try {
    session = await startSession(state.config);
  } catch (error) {
    $("who").textContent = "Not signed in";
    show($("notice"), messageOf(error));
    return;
  }
  if (session.signIn) {
    $("who").textContent = "Not signed in";
    $("sign-in").hidden = false;
    $("sign-in").addEventListener("click", () => session.signIn());
    show($("notice"), "Sign in to restore your photos.");
    return;
  }
  $("who").textContent = session.label;
  if (session.signOut) {
    $("sign-out").hidden = false;
    $("sign-out").addEventListener("click", () => session.signOut());
  }
  state.api = new Api(state.config, session.getToken);
  try {
    state.live = new Live({ graphqlPath: state.config.graphqlPath, getToken: session.getToken, onConnection });
    state.history = new History({ api: state.api, onOpen: (id) => openFromHistory(id) });
    setUpChoosing();
    setUpJobPanel();
    $("submit").hidden = false;
    await state.history.load();
    state.live.watchJobs((job) => state.history.upsert(job));
  } catch (error) {
    show($("notice"), messageOf(error));
  }
}

function onConnection(connected) {
  $("history").dataset.live = connected ? "connected" : "disconnected";
  $("live-state").textContent = connected ? "● live" : "reconnecting…";
  $("live-state").classList.toggle("on", connected);
}

function openFromHistory(id) {
  const job = state.history.jobs.get(id);
  if (job) openJob(job);
}

start();
