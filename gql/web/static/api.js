// The public API as the page uses it: GraphQL over HTTP for reads and small uploads (the GraphQL
// multipart request spec), REST for the direct-upload flow and cancelling. Uploads go through
// XMLHttpRequest because fetch() reports no upload progress. Every failure becomes an ApiError
// whose message is written for the person in front of the page.

import { CONTENT_TYPES, humanBytes } from "./photo.js";

// Photos above this go straight to storage (direct upload), as `restoration submit` does: the
// bytes never pass through the API, and a slow network does not hold an API connection.
export const DIRECT_UPLOAD_BYTES = 4 * 1024 * 1024;

// The contract's job fields; the page selects those this server's schema has (see `jobFields`).
const JOB_FIELDS = [
  "id", "status", "denoise", "originalImageUrl", "processedImageUrl", "errorMessage", "errorCode",
  "retryable", "progress", "queuePosition", "etaSeconds", "createdAt", "updatedAt",
];
// Headers a browser sets itself and refuses from scripts; it sends the same values (the length of
// the body, the server's host), so a ticket's signature over them still holds.
const FORBIDDEN_HEADERS = new Set(["content-length", "host", "connection"]);

export class ApiError extends Error {
  constructor(message, { code = null, status = null } = {}) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

const MESSAGES = {
  PAYLOAD_TOO_LARGE: (limits) => `This photo is too large: the limit is ${humanBytes(limits.maxUploadBytes)} (or 150 megapixels).`,
  UNSUPPORTED_MEDIA_TYPE: () => "This file is not a photo the service can read. Choose a JPEG, PNG, HEIC or WebP image.",
  SERVICE_UNAVAILABLE: () => "The service is unavailable at the moment. Please try again in a minute.",
  TOO_MANY_REQUESTS: () => "You have many photos waiting already. Try again when some of them are done.",
  UNAUTHENTICATED: () => "Your sign-in has expired. Reload the page to sign in again.",
  NOT_FOUND: () => "This job no longer exists.",
  CONFLICT: () => "This job has already finished.",
};
const STATUS_CODES = { 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE",
                       415: "UNSUPPORTED_MEDIA_TYPE", 429: "TOO_MANY_REQUESTS", 502: "SERVICE_UNAVAILABLE",
                       503: "SERVICE_UNAVAILABLE", 504: "SERVICE_UNAVAILABLE" };

export class Api {
  constructor(config, getToken) {
    this.config = config;
    this.getToken = getToken;
    this.rest = config.restPath;
    this.fields = null;
  }

  error(code, status, detail) {
    const message = MESSAGES[code]?.(this.config) ?? detail ?? "Something went wrong. Please try again.";
    return new ApiError(message, { code, status });
  }

  async authorization() {
    return { Authorization: `Bearer ${await this.getToken()}` };
  }

  /** The contract's job fields this server has: a server that does not have some of them yet
   *  (queue position, ETA) still serves the page. Asked once. */
  async jobFields() {
    if (!this.fields) {
      const data = await this.graphql('{ __type(name: "RestorationJob") { fields { name } } }');
      const known = new Set(data.__type.fields.map((field) => field.name));
      this.fields = JOB_FIELDS.filter((name) => known.has(name)).join(" ");
    }
    return this.fields;
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
    const fields = await this.jobFields();
    const data = await this.graphql(
      `query Jobs($first: Int!, $after: String) { jobs(first: $first, after: $after) {
         edges { node { ${fields} } } pageInfo { hasNextPage endCursor } } }`,
      { first, after },
    );
    return { jobs: data.jobs.edges.map((edge) => edge.node), next: data.jobs.pageInfo.hasNextPage ? data.jobs.pageInfo.endCursor : null };
  }

  /** Submits a photo, reporting the upload's progress (0–1); resolves to the new job. */
  async submit(file, { format, denoise, onProgress }) {
    if (file.size > DIRECT_UPLOAD_BYTES) return this.submitDirect(file, { format, denoise, onProgress });
    const fields = await this.jobFields();
    const operations = {
      query: `mutation Restore($file: Upload!, $denoise: Float) { restoreImage(file: $file, denoise: $denoise) { ${fields} } }`,
      variables: { file: null, denoise },
    };
    const form = new FormData();
    form.append("operations", JSON.stringify(operations));
    form.append("map", JSON.stringify({ 0: ["variables.file"] }));
    form.append("0", file, file.name);
    const { status, text } = await this.send("POST", this.config.graphqlPath, form, {
      headers: await this.authorization(),
      onProgress,
    });
    return this.graphqlResult(status, text).restoreImage;
  }

  /** The direct-upload flow: a ticket, the bytes straight to its URL, then the restore. */
  async submitDirect(file, { format, denoise, onProgress }) {
    const contentType = CONTENT_TYPES[format];
    const ticket = await this.restCall("POST", "/uploads", { size: file.size, content_type: contentType });
    const headers = Object.fromEntries(
      Object.entries(ticket.headers).filter(([name]) => !FORBIDDEN_HEADERS.has(name.toLowerCase())),
    );
    const sent = await this.send(ticket.method, ticket.url, file, { headers, onProgress });
    if (sent.status < 200 || sent.status >= 300) {
      throw this.error(STATUS_CODES[sent.status] ?? null, sent.status);
    }
    return fromRest(await this.restCall("POST", `/uploads/${encodeURIComponent(ticket.id)}/restore`, { denoise }));
  }

  async cancel(jobId) {
    return fromRest(await this.restCall("POST", `/jobs/${encodeURIComponent(jobId)}/cancel`));
  }

  async restCall(method, path, json = undefined) {
    let response;
    try {
      response = await fetch(this.rest + path, {
        method,
        headers: { ...(json === undefined ? {} : { "Content-Type": "application/json" }), ...(await this.authorization()) },
        body: json === undefined ? undefined : JSON.stringify(json),
      });
    } catch {
      throw this.error("SERVICE_UNAVAILABLE", 0);
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) throw this.error(STATUS_CODES[response.status], response.status, body?.detail);
    return body;
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

/** A REST job (snake_case, lower-case status) in the GraphQL shape the rest of the page uses. */
export function fromRest(job) {
  const camel = (name) => name.replace(/_([a-z])/g, (_, letter) => letter.toUpperCase());
  const converted = Object.fromEntries(Object.entries(job).map(([name, value]) => [camel(name), value]));
  converted.status = String(job.status).toUpperCase();
  if (converted.errorCode) converted.errorCode = String(converted.errorCode).toUpperCase();
  return converted;
}
