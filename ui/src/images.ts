// Client-side checks for image input, worded the same as the backend's errors,
// plus a small cache of object URLs for stored images.
import { api } from './ipc';
import { formatBytes } from './format';

export const MAX_IMAGE_BYTES = 50 * 1024 * 1024;
const IMAGE_EXTENSIONS = new Set(['png', 'jpg', 'jpeg', 'webp', 'gif', 'bmp', 'tif', 'tiff', 'ico', 'pnm', 'ppm', 'tga', 'qoi', 'avif']);
const SUPPORTED = 'Use a PNG, JPEG, WebP, GIF or BMP image.';

export function baseName(path: string): string {
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] ?? path;
}

function extension(name: string): string | null {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : null;
}

/** Rejects a picked or pasted file that is obviously not a usable image; null when it may be sent. */
export function checkImageFile(name: string, size: number, mime: string): string | null {
  if (size === 0) return `"${name}" is empty (0 bytes). Choose a different image.`;
  if (size > MAX_IMAGE_BYTES)
    return `"${name}" is too large (${formatBytes(size)}). Images up to ${formatBytes(MAX_IMAGE_BYTES)} are accepted; shrink it and try again.`;
  const ext = extension(name);
  const wrongMime = mime !== '' && !mime.startsWith('image/');
  const wrongExt = ext !== null && !IMAGE_EXTENSIONS.has(ext) && (mime === '' || wrongMime);
  if (wrongMime || wrongExt) return `"${name}" is not an image${mime ? ` (${mime})` : ''}. ${SUPPORTED}`;
  return null;
}

/** Same check for a dropped path, where only the name is known. */
export function checkImagePath(path: string): string | null {
  const name = baseName(path);
  const ext = extension(name);
  if (ext !== null && !IMAGE_EXTENSIONS.has(ext)) return `"${name}" is not an image. ${SUPPORTED}`;
  return null;
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
