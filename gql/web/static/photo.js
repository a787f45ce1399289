// What the page can tell about a chosen file before sending it. The server is the judge (it reads
// the content); this only spares a person a long upload of something that is plainly no photo.

const SIGNATURE_BYTES = 16;
const HEIF_BRANDS = new Set(["heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1"]);

/** "jpeg" | "png" | "webp" | "heic" | null, from the file's first bytes. */
export async function sniffFormat(file) {
  const head = new Uint8Array(await file.slice(0, SIGNATURE_BYTES).arrayBuffer());
  const ascii = (from, to) => String.fromCharCode(...head.slice(from, to));
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return "jpeg";
  if (ascii(0, 8) === "\x89PNG\r\n\x1a\n") return "png";
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "webp";
  if (ascii(4, 8) === "ftyp" && HEIF_BRANDS.has(ascii(8, 12))) return "heic";
  return null;
}

export const CONTENT_TYPES = { jpeg: "image/jpeg", png: "image/png", webp: "image/webp", heic: "image/heic" };

/** Whether this browser shows an image of this URL's format (most cannot show HEIC). */
export function browserShows(url) {
  const path = new URL(url, location.href).pathname.toLowerCase();
  return !/\.(heic|heif)$/.test(path);
}

export function humanBytes(bytes) {
  if (bytes < 1024 * 1024) return `${Math.max(1, Math.round(bytes / 1024))} KB`;
  const mb = bytes / (1024 * 1024);
  return `${mb < 10 ? mb.toFixed(1) : Math.round(mb)} MB`;
}
