// The caller's past jobs, newest first, one page at a time (the GraphQL `jobs` connection), kept
// current by `jobsUpdated`. Choosing one opens it in the job panel.

import { browserShows } from "./photo.js";

function samePath(a, b) {
  return new URL(a, location.href).pathname === new URL(b, location.href).pathname;
}

const STATUS_WORDS = { PENDING: "waiting", PROCESSING: "restoring", COMPLETED: "done", FAILED: "failed", CANCELLED: "cancelled" };

export class History {
  constructor({ api, onOpen }) {
    this.api = api;
    this.onOpen = onOpen;
    this.section = document.getElementById("history");
    this.list = document.getElementById("history-list");
    this.empty = document.getElementById("history-empty");
    this.more = document.getElementById("more");
    this.items = new Map(); // job id → <li>
    this.jobs = new Map(); // job id → its latest state
    this.next = null;
    this.currentId = null;
    this.more.addEventListener("click", () => this.loadMore());
  }

  async load() {
    this.section.hidden = false;
    const page = await this.api.jobs();
    for (const job of page.jobs) this.list.append(this.render(job));
    this.setNext(page.next);
  }

  async loadMore() {
    this.more.disabled = true;
    try {
      const page = await this.api.jobs({ after: this.next });
      for (const job of page.jobs) if (!this.items.has(job.id)) this.list.append(this.render(job));
      this.setNext(page.next);
    } finally {
      this.more.disabled = false;
    }
  }

  setNext(next) {
    this.next = next;
    this.more.hidden = next === null;
    this.empty.hidden = this.items.size > 0;
  }

  /** A job changed or is new: update its entry in place, or put it first. */
  upsert(job) {
    const existing = this.items.get(job.id);
    if (existing) {
      existing.replaceWith(this.render(job, existing.querySelector("img.thumb").getAttribute("src")));
    } else {
      this.list.prepend(this.render(job));
    }
    this.empty.hidden = true;
  }

  markCurrent(id) {
    this.currentId = id;
    for (const [jobId, item] of this.items) item.firstElementChild.classList.toggle("current", jobId === id);
  }

  render(job, previousThumb = null) {
    const item = document.createElement("li");
    item.dataset.jobId = job.id;
    const button = document.createElement("button");
    button.type = "button";
    button.classList.toggle("current", job.id === this.currentId);
    const thumb = document.createElement("img");
    thumb.className = "thumb";
    thumb.alt = "";
    thumb.loading = "lazy";
    const source = job.processedImageUrl ?? job.originalImageUrl;
    // Every read mints fresh signed URLs: the same image under a new signature is not loaded again.
    if (browserShows(source)) thumb.src = previousThumb && samePath(previousThumb, source) ? previousThumb : source;
    else thumb.classList.add("missing");
    const meta = document.createElement("span");
    meta.className = "meta";
    const badge = document.createElement("span");
    badge.className = `badge ${job.status.toLowerCase()}`;
    badge.textContent = STATUS_WORDS[job.status] ?? job.status.toLowerCase();
    const time = document.createElement("time");
    time.dateTime = job.createdAt;
    time.textContent = new Date(job.createdAt).toLocaleString();
    meta.append(badge, time);
    button.append(thumb, meta);
    button.setAttribute("aria-label", `Photo from ${time.textContent}, ${badge.textContent}`);
    button.addEventListener("click", () => this.onOpen(job.id));
    item.append(button);
    this.items.set(job.id, item);
    this.jobs.set(job.id, job);
    return item;
  }
}
