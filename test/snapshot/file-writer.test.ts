import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { FileWriter } from '../../src/snapshot/file-writer.js';
import { tempDir } from '../support/paths.js';

test('pieces of any size, gathered into batches written several at once, make the file in order', async () => {
  const dir = await tempDir('file-writer');
  try {
    const file = join(dir.path, 'out');
    const handle = await open(file, 'wx');
    const writer = new FileWriter(handle);
    const pieces: Buffer[] = [];
    // Small pieces as a socket gives them, a piece larger than a batch, and a last partial batch.
    for (let i = 0; i < 300; i++) pieces.push(randomBytes(1 + ((i * 7919) % (64 * 1024))));
    pieces.push(randomBytes(9 * 1024 * 1024));
    for (let i = 0; i < 50; i++) pieces.push(randomBytes(1000 + i));
    for (const piece of pieces) await writer.write(piece);
    const expected = Buffer.concat(pieces);
    assert.equal(writer.bytes, expected.length);
    await writer.flush();
    await handle.close();
    assert.ok((await readFile(file)).equals(expected));
  } finally {
    await dir.remove();
  }
});

test('a failed write is thrown by the wait that meets it', async () => {
  const dir = await tempDir('file-writer-fails');
  try {
    const file = join(dir.path, 'out');
    await (await open(file, 'w')).close();
    // Opened read-only: every write fails (EBADF).
    const handle = await open(file, 'r');
    const writer = new FileWriter(handle);
    await assert.rejects(async () => {
      for (let i = 0; i < 4; i++) await writer.write(randomBytes(4 * 1024 * 1024));
      await writer.flush();
    }, /EBADF/);
    await handle.close();
  } finally {
    await dir.remove();
  }
});
