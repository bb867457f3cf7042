// Checks on an image before it is uploaded for a prediction: the API takes a JPEG or PNG of at
// most 4 MB (functions/api/src/predict.rs), and checks the bytes themselves, so do we.

export const MAX_IMAGE_BYTES = 4 * 1024 * 1024;

export type ImageType = 'image/jpeg' | 'image/png';

export type ImageCheck = { ok: true; type: ImageType } | { ok: false; message: string };

const BY_EXTENSION: Record<string, ImageType> = {
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  jfif: 'image/jpeg',
  png: 'image/png',
};

/** "1.5 MB", "820 KB", "12 bytes". */
export function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)} MB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KB`;
  return `${n} byte${n === 1 ? '' : 's'}`;
}

/**
 * The file's type and size, from what the browser says about it: its MIME type, or its
 * extension when the browser gives none.
 */
export function checkImageFile(file: { name: string; type: string; size: number }): ImageCheck {
  const declared = file.type.toLowerCase();
  let type: ImageType | undefined;
  if (declared === 'image/jpeg' || declared === 'image/jpg' || declared === 'image/pjpeg') type = 'image/jpeg';
  else if (declared === 'image/png') type = 'image/png';
  else if (declared === '') {
    const ext = file.name.split('.').pop()?.toLowerCase() ?? '';
    type = file.name.includes('.') ? BY_EXTENSION[ext] : undefined;
  }
  if (!type) {
    const what = declared ? `a ${declared} file` : 'not an image the app recognises';
    return { ok: false, message: `“${file.name}” is ${what} — choose a JPEG or PNG image.` };
  }
  if (file.size === 0) {
    return { ok: false, message: `“${file.name}” is empty — choose another image.` };
  }
  if (file.size > MAX_IMAGE_BYTES) {
    return {
      ok: false,
      message: `“${file.name}” is ${formatBytes(file.size)}; the limit is 4 MB — resize or recompress it below 4 MB.`,
    };
  }
  return { ok: true, type };
}

/** The image type from a file's first bytes, or null when it is neither JPEG nor PNG. */
export function sniffImageType(head: Uint8Array): ImageType | null {
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'image/jpeg';
  const png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (head.length >= png.length && png.every((b, i) => head[i] === b)) return 'image/png';
  return null;
}

async function readHead(blob: Blob, n: number): Promise<Uint8Array> {
  const part = blob.slice(0, n);
  if (typeof part.arrayBuffer === 'function') return new Uint8Array(await part.arrayBuffer());
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(new Uint8Array(r.result as ArrayBuffer));
    r.onerror = () => reject(r.error ?? new Error('the file could not be read'));
    r.readAsArrayBuffer(part);
  });
}

/**
 * The full check: name, type and size first, then the bytes themselves. The type sent is the
 * one the bytes show, so a PNG named .jpg still goes up as image/png.
 */
export async function checkImage(file: File): Promise<ImageCheck> {
  const first = checkImageFile(file);
  if (!first.ok) return first;
  let head: Uint8Array;
  try {
    head = await readHead(file, 8);
  } catch {
    return { ok: false, message: `“${file.name}” could not be read — choose it again.` };
  }
  const sniffed = sniffImageType(head);
  if (!sniffed) {
    return {
      ok: false,
      message: `“${file.name}” is not really a JPEG or PNG image (its content says otherwise) — choose another image.`,
    };
  }
  return { ok: true, type: sniffed };
}
