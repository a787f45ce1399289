// The public API as the page uses it: GraphQL over HTTP for everything (reads, cancelling, small
// uploads by the GraphQL multipart request spec, the direct-upload flow), plus the one PUT of a
// large photo straight to the storage URL a ticket names. Uploads go through XMLHttpRequest because
// fetch() reports no upload progress. Every failure becomes an ApiError whose message is written
// for the person in front of the page.

import { CONTENT_TYPES, humanBytes } from "./photo.js";

// Photos above this go straight to storage (direct upload), as `restoration submit` does: the
// bytes never pass through the API, and a slow network does not hold an API connection.
export const DIRECT_UPLOAD_BYTES = 4 * 1024 * 1024;
// A submit whose request got no answer at all (the network dropped) is sent once more, with the
// same idempotency key, after this pause: if the first one did reach the server, the server
// answers the second with the first's job instead of restoring the photo twice.
const SUBMIT_RETRY_DELAY_MS = 1000;

// Every job field of the contract; each query, mutation and subscription of the page selects them.
export const JOB_FRAGMENT = `fragment JobFields on RestorationJob {
  id status denoise originalImageUrl processedImageUrl errorMessage errorCode retryable
  progress queuePosition etaSeconds createdAt updatedAt
}`;

const JOBS = `query Jobs($first: Int!, $after: String) {
  jobs(first: $first, after: $after) { edges { node { ...JobFields } } pageInfo { hasNextPage endCursor } }
} ${JOB_FRAGMENT}`;
const RESTORE_IMAGE = `mutation RestoreImage($file: Upload!, $denoise: Float, $idempotencyKey: String) {
  restoreImage(file: $file, denoise: $denoise, idempotencyKey: $idempotencyKey) { ...JobFields }
} ${JOB_FRAGMENT}`;
const CREATE_UPLOAD = `mutation CreateUpload($size: Int!, $contentType: String) {
  createUpload(size: $size, contentType: $contentType) { id url method headers { name value } }
}`;
const RESTORE_UPLOAD = `mutation RestoreUpload($uploadId: ID!, $denoise: Float, $idempotencyKey: String) {
  restoreUpload(uploadId: $uploadId, denoise: $denoise, idempotencyKey: $idempotencyKey) { ...JobFields }
} ${JOB_FRAGMENT}`;
const CANCEL_JOB = `mutation CancelJob($id: ID!) { cancelJob(id: $id) { ...JobFields } } ${JOB_FRAGMENT}`;

// Headers a browser sets itself and refuses from scripts; it sends the same values (the length of
// the body, the server's host), so a ticket's signature over them still holds.
const FORBIDDEN_HEADERS = new Set(["content-length", "host", "connection"]);

export class ApiError extends Error {
  /** `status` 0: no answer at all (the network failed); else the HTTP status, or null. */
  constructor(message, { code = null, status = null } = {}) {
    super(message);
    this.code = code;
    this.status = status;
  }

  get unanswered() {
    return this.status === 0;
  }
}

const MESSAGES = {
  PAYLOAD_TOO_LARGE: (limits) => `This photo is too large: the limit is ${humanBytes(limits.maxUploadBytes)} (or 150 megapixels).`,
  UNSUPPORTED_MEDIA_TYPE: () => "This file is not a photo the service can read. Choose a JPEG, PNG, HEIC or WebP image.",
  SERVICE_UNAVAILABLE: () => "The service is unavailable at the moment. Please try again in a minute.",
  TOO_MANY_REQUESTS: () => "You have many photos waiting already. Try again when some of them are done.",
  UNAUTHENTICATED: () => "Your sign-in has expired. Reload the page to sign in again.",
  NOT_FOUND: () => "This job no longer exists.",
};
const STATUS_CODES = { 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE",
                       415: "UNSUPPORTED_MEDIA_TYPE", 429: "TOO_MANY_REQUESTS", 502: "SERVICE_UNAVAILABLE",
                       503: "SERVICE_UNAVAILABLE", 504: "SERVICE_UNAVAILABLE" };

/** A fresh idempotency key, one per thing a person asks for (a press of Restore or Try again). */
export function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // randomUUID exists only in secure contexts (https, localhost); a page served over plain http
  // elsewhere still gets 122 random bits.
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Api {
  constructor(config, getToken) {
    this.config = config;
    this.getToken = getToken;
  }

  error(code, status, detail) {
    const message = MESSAGES[code]?.(this.config) ?? detail ?? "Something went wrong. Please try again.";
    return new ApiError(message, { code, status });
  }

  async authorization() {
    return { Authorization: `Bearer ${await this.getToken()}` };
  }

  async graphql(query, variables = {}) {
    let response;
    try {
      response = await fetch(this.config.graphqlPath, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...(await this.authorization()) },
        body: JSON.stringify({ query, variables }),
      });
    } catch {
      throw this.error("SERVICE_UNAVAILABLE", 0);
    }
    return this.graphqlResult(response.status, await response.text());
  }

  graphqlResult(status, text) {
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: judged by the status below
    }
    if (status !== 200 || !body) {
      throw this.error(STATUS_CODES[status] ?? null, status, body?.detail);
    }
    if (body.errors?.length) {
      const [first] = body.errors;
      throw this.error(first.extensions?.code, status, first.message);
    }
    return body.data;
  }

  async jobs({ after = null, first = 12 } = {}) {
    const data = await this.graphql(JOBS, { first, after });
    return { jobs: data.jobs.edges.map((edge) => edge.node), next: data.jobs.pageInfo.hasNextPage ? data.jobs.pageInfo.endCursor : null };
  }

  /** Submits a photo, reporting the upload's progress (0–1); resolves to the new job. The key
   *  names this one request of the person's: a retry after a dropped connection sends it again. */
  async submit(file, { format, denoise, idempotencyKey, onProgress }) {
    if (file.size > DIRECT_UPLOAD_BYTES) return this.submitDirect(file, { format, denoise, idempotencyKey, onProgress });
    return this.retriedOnce(async () => {
      const form = new FormData();
      form.append("operations", JSON.stringify({ query: RESTORE_IMAGE, variables: { file: null, denoise, idempotencyKey } }));
      form.append("map", JSON.stringify({ 0: ["variables.file"] }));
      form.append("0", file, file.name);
      const { status, text } = await this.send("POST", this.config.graphqlPath, form, {
        headers: await this.authorization(),
        onProgress,
      });
      return this.graphqlResult(status, text).restoreImage;
    });
  }

  /** The direct-upload flow: a ticket, the bytes straight to its URL, then the restore. */
  async submitDirect(file, { format, denoise, idempotencyKey, onProgress }) {
    const { createUpload: ticket } = await this.graphql(CREATE_UPLOAD, { size: file.size, contentType: CONTENT_TYPES[format] });
    const headers = Object.fromEntries(
      ticket.headers.filter(({ name }) => !FORBIDDEN_HEADERS.has(name.toLowerCase())).map(({ name, value }) => [name, value]),
    );
    const sent = await this.send(ticket.method, ticket.url, file, { headers, onProgress });
    if (sent.status < 200 || sent.status >= 300) {
      throw this.error(STATUS_CODES[sent.status] ?? null, sent.status);
    }
    return this.retriedOnce(async () => (await this.graphql(RESTORE_UPLOAD, { uploadId: ticket.id, denoise, idempotencyKey })).restoreUpload);
  }

  /** `request()`, and once more if it got no answer at all (what an idempotency key is for). */
  async retriedOnce(request) {
    try {
      return await request();
    } catch (error) {
      if (!(error instanceof ApiError && error.unanswered)) throw error;
      await pause(SUBMIT_RETRY_DELAY_MS);
      return request();
    }
  }

  async cancel(jobId) {
    try {
      return (await this.graphql(CANCEL_JOB, { id: jobId })).cancelJob;
    } catch (error) {
      if (error instanceof ApiError && error.code === "CONFLICT") throw new ApiError("This job has already finished.", { code: error.code, status: error.status });
      throw error;
    }
  }

  /** One request through XMLHttpRequest, for its upload progress events. */
  send(method, url, body, { headers = {}, onProgress = () => {} }) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open(method, url);
      for (const [name, value] of Object.entries(headers)) request.setRequestHeader(name, value);
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      });
      request.addEventListener("load", () => {
        onProgress(1);
        resolve({ status: request.status, text: request.responseText });
      });
      request.addEventListener("error", () => reject(this.error("SERVICE_UNAVAILABLE", 0)));
      request.addEventListener("abort", () => reject(new ApiError("The upload was stopped.")));
      request.send(body);
    });
  }
}
