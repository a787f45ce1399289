// A job's state in words for the person waiting for it: "3rd in line · about 40 s",
// "Restoring · 45 % · about 12 s", "Restored". The queue position and the ETA are the server's
// (`queuePosition`, `etaSeconds`); either may be null (no place yet, nothing measured yet).

const ORDINAL = new Intl.PluralRules("en", { type: "ordinal" });
const SUFFIX = { one: "st", two: "nd", few: "rd", other: "th" };

/** 1 → "1st", 2 → "2nd", 3 → "3rd", 11 → "11th", 22 → "22nd". */
export function ordinal(n) {
  return `${n}${SUFFIX[ORDINAL.select(n)]}`;
}

/** "about 40 s", "about 3 min", or "" when the server has no estimate. */
export function etaText(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return `about ${Math.max(1, Math.round(seconds))} s`;
  return `about ${Math.round(seconds / 60)} min`;
}

const known = (value) => value !== null && value !== undefined;
const joined = (...parts) => parts.filter(Boolean).join(" · ");

export function statusText(job) {
  switch (job.status) {
    case "PENDING":
      return joined(known(job.queuePosition) ? `${ordinal(job.queuePosition)} in line` : "Waiting in line", etaText(job.etaSeconds));
    case "PROCESSING":
      return joined("Restoring", known(job.progress) ? `${Math.round(job.progress * 100)} %` : "", etaText(job.etaSeconds));
    case "COMPLETED":
      return "Restored";
    case "FAILED":
      return "The restoration failed";
    case "CANCELLED":
      return "Cancelled";
    default:
      return job.status.toLowerCase();
  }
}
