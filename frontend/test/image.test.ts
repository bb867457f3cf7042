import { describe, expect, it } from 'vitest';
import { checkImage, checkImageFile, formatBytes, MAX_IMAGE_BYTES, sniffImageType } from '../src/image';

const JPEG_HEAD = [0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46];
const PNG_HEAD = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function file(bytes: number[], name: string, type: string): File {
  return new File([new Uint8Array(bytes)], name, { type });
}

describe('checkImageFile', () => {
  it('takes JPEG and PNG up to 4 MB', () => {
    expect(checkImageFile({ name: 'a.jpg', type: 'image/jpeg', size: 1000 })).toEqual({ ok: true, type: 'image/jpeg' });
    expect(checkImageFile({ name: 'a.png', type: 'image/png', size: MAX_IMAGE_BYTES })).toEqual({ ok: true, type: 'image/png' });
  });
  it('refuses anything over 4 MB, saying the size', () => {
    const r = checkImageFile({ name: 'big.jpg', type: 'image/jpeg', size: MAX_IMAGE_BYTES + 1 });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toMatch(/4\.0 MB; the limit is 4 MB/);
  });
  it('refuses other types', () => {
    for (const [name, type] of [
      ['a.gif', 'image/gif'],
      ['a.webp', 'image/webp'],
      ['notes.txt', 'text/plain'],
      ['x.svg', 'image/svg+xml'],
    ]) {
      const r = checkImageFile({ name, type, size: 10 });
      expect(r.ok, name).toBe(false);
      if (!r.ok) expect(r.message).toContain('choose a JPEG or PNG image');
    }
  });
  it('falls back to the extension when the browser gives no type', () => {
    expect(checkImageFile({ name: 'photo.JPEG', type: '', size: 10 })).toEqual({ ok: true, type: 'image/jpeg' });
    expect(checkImageFile({ name: 'photo.png', type: '', size: 10 })).toEqual({ ok: true, type: 'image/png' });
    expect(checkImageFile({ name: 'photo', type: '', size: 10 }).ok).toBe(false);
    expect(checkImageFile({ name: 'photo.heic', type: '', size: 10 }).ok).toBe(false);
  });
  it('refuses an empty file', () => {
    expect(checkImageFile({ name: 'a.png', type: 'image/png', size: 0 }).ok).toBe(false);
  });
});

describe('sniffImageType', () => {
  it('knows JPEG and PNG by their first bytes', () => {
    expect(sniffImageType(new Uint8Array(JPEG_HEAD))).toBe('image/jpeg');
    expect(sniffImageType(new Uint8Array(PNG_HEAD))).toBe('image/png');
    expect(sniffImageType(new Uint8Array([0x47, 0x49, 0x46, 0x38]))).toBeNull();
    expect(sniffImageType(new Uint8Array([0xff, 0xd8]))).toBeNull();
    expect(sniffImageType(new Uint8Array(PNG_HEAD.slice(0, 7)))).toBeNull();
  });
});

describe('checkImage', () => {
  it('sends the type the bytes show', async () => {
    expect(await checkImage(file([...PNG_HEAD, 1, 2, 3], 'really-a-png.jpg', 'image/jpeg'))).toEqual({ ok: true, type: 'image/png' });
    expect(await checkImage(file([...JPEG_HEAD], 'a.jpg', 'image/jpeg'))).toEqual({ ok: true, type: 'image/jpeg' });
  });
  it('refuses a file whose content is not an image', async () => {
    const r = await checkImage(file([0x68, 0x65, 0x6c, 0x6c, 0x6f], 'fake.png', 'image/png'));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toMatch(/not really a JPEG or PNG/);
  });
});

describe('formatBytes', () => {
  it('formats sizes', () => {
    expect(formatBytes(1)).toBe('1 byte');
    expect(formatBytes(512)).toBe('512 bytes');
    expect(formatBytes(2048)).toBe('2 KB');
    expect(formatBytes(5 * 1024 * 1024)).toBe('5.0 MB');
  });
});
