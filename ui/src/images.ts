// Client-side checks for image input, worded the same as the backend's errors,
// plus a small cache of object URLs for stored images.
import { api } from './ipc';

// Same limit and wording as the backend (impchat-input's DecodeLimits and ImageError), so a file
// refused here reads exactly as it would had the backend refused it.
export const MAX_IMAGE_BYTES = 64 * 1024 * 1024;
const MIB = 1024 * 1024;
const IMAGE_EXTENSIONS = new Set(['png', 'jpg', 'jpeg', 'jpe', 'jfif', 'pjpeg', 'webp', 'gif', 'bmp', 'dib', 'tif', 'tiff']);
const EMPTY = 'The file is empty (0 bytes). Pick the image again; if it was downloading, wait for it to finish.';
const PDF = 'This is a PDF document, not an image. Take a screenshot of the page or export it as PNG, and try again.';
const HEIC = "This looks like a HEIC photo, which ImpChat can't read yet. Export it as JPEG or PNG and try again.";
const AVIF = "This looks like an AVIF image, which ImpChat can't read yet. Export it as JPEG or PNG and try again.";
const NOT_IMAGE =
  'This file is not an image ImpChat recognises (it reads JPEG, PNG, WebP, GIF, BMP and TIFF). Pick an image file and try again.';

export function baseName(path: string): string {
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] ?? path;
}

function extension(name: string): string | null {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : null;
}

function kindProblem(ext: string | null, mime: string): string | null {
  if (ext === 'pdf' || mime === 'application/pdf') return PDF;
  if (ext === 'heic' || ext === 'heif' || mime === 'image/heic' || mime === 'image/heif') return HEIC;
  if (ext === 'avif' || mime === 'image/avif') return AVIF;
  if (mime !== '' && !mime.startsWith('image/')) return NOT_IMAGE;
  if (ext !== null && !IMAGE_EXTENSIONS.has(ext) && !mime.startsWith('image/')) return NOT_IMAGE;
  return null;
}

/** Rejects a picked or pasted file that is obviously not a usable image; null when it may be sent. */
export function checkImageFile(name: string, size: number, mime: string): string | null {
  const problem =
    size === 0
      ? EMPTY
      : size > MAX_IMAGE_BYTES
        ? `The file is ${Math.ceil(size / MIB)} MiB; ImpChat accepts images up to ${MAX_IMAGE_BYTES / MIB} MiB. Shrink or re-compress it and try again.`
        : kindProblem(extension(name), mime);
  return problem === null ? null : `${name}: ${problem}`;
}

/** Same check for a dropped path, where only the name is known. */
export function checkImagePath(path: string): string | null {
  const name = baseName(path);
  const problem = kindProblem(extension(name), '');
  return problem === null ? null : `${name}: ${problem}`;
}

/** Image files carried by a paste or drop event. */
export function filesFromDataTransfer(dt: DataTransfer | null): File[] {
  if (!dt) return [];
  const files: File[] = [];
  for (const item of Array.from(dt.items)) {
    if (item.kind !== 'file') continue;
    const file = item.getAsFile();
    if (file) files.push(file);
  }
  return files;
}

const urls = new Map<string, Promise<string>>();

/** An object URL for a stored image (thumbnail or full size), fetched once per session. */
export function imageUrl(sha256: string, mime: string, thumbnail: boolean): Promise<string> {
  const key = `${sha256}:${thumbnail ? 't' : 'f'}`;
  let url = urls.get(key);
  if (!url) {
    url = api.getImage(sha256, thumbnail).then((buf) => {
      const type = thumbnail ? sniffMime(buf) ?? mime : mime;
      return URL.createObjectURL(new Blob([buf], { type }));
    });
    url.catch(() => urls.delete(key));
    urls.set(key, url);
  }
  return url;
}

function sniffMime(buf: ArrayBuffer): string | null {
  const b = new Uint8Array(buf.slice(0, 4));
  if (b[0] === 0x89 && b[1] === 0x50) return 'image/png';
  if (b[0] === 0xff && b[1] === 0xd8) return 'image/jpeg';
  if (b[0] === 0x52 && b[1] === 0x49) return 'image/webp';
  return null;
}
