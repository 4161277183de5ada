import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { Kvs2Client } from '../../src/client/kvs2-client.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

const MIB = 1024 * 1024;
/** The budget this test runs the server with. */
const BUDGET = 32 * MIB;
/**
 * What the server's RSS may grow by while the budget is full: the replies it holds, their encoded copies
 * and the transport's buffers are each at most about the budget, plus room for the allocator and V8.
 */
const RSS_GROWTH_BOUND = 3 * BUDGET + 96 * MIB;

/** One gRPC call on a raw HTTP/2 connection that grants no window. */
interface StalledCall {
  readonly stream: http2.ClientHttp2Stream;
  /** Resolves with the grpc-status and kvs2-error-code of a call the server refused (trailers-only). */
  readonly refused: Promise<Refusal>;
  /** The refusal, once it has arrived. */
  refusal: Refusal | undefined;
}

interface Refusal {
  readonly status: number;
  readonly code: string | undefined;
}

function frame(body: Buffer): Buffer {
  const framed = Buffer.alloc(5 + body.length);
  framed.writeUInt32BE(body.length, 1);
  body.copy(framed, 5);
  return framed;
}

/** ScanRequest { prefix = 1 } encoded by hand: the wire is what this test is about. */
function scanPrefix(prefix: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x0a, prefix.length]), prefix]);
}

function startCall(session: http2.ClientHttp2Session, path: string, body: Buffer): StalledCall {
  const stream = session.request({
    ':method': 'POST',
    ':path': path,
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stream.on('error', () => {});
  const call: { -readonly [K in keyof StalledCall]: StalledCall[K] } = {
    stream,
    refused: new Promise<Refusal>((resolve) => {
      stream.on('response', (headers) => {
        const status = headers['grpc-status'];
        if (status === undefined) return;
        call.refusal = { status: Number(status), code: headers['kvs2-error-code'] as string | undefined };
        resolve(call.refusal);
      });
    }),
    refusal: undefined,
  };
  stream.end(frame(body));
  return call;
}

async function rssOf(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /VmRSS:\s+(\d+) kB/.exec(text);
  assert.ok(match, 'VmRSS in /proc/<pid>/status');
  return Number(match[1]) * 1024;
}

describe('many heavy reads that are never read back', { skip: process.platform !== 'linux' && 'reads /proc' }, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let client: Kvs2Client;

  before(async () => {
    dir = await tempDir('overload');
    server = await ServerProcess.start({
      dataDir: dir.path,
      args: ['--max-reply-bytes', String(8 * MIB), '--max-reply-bytes-in-flight', String(BUDGET)],
    });
    client = new Kvs2Client(server.address);
    // 48 values of 100 KiB: every Scan of the prefix asks for a page of about 4 MiB.
    const value = Buffer.alloc(100 * 1024, 'v');
    const mutations = Array.from({ length: 48 }, (_, i) => ({
      key: Buffer.from(`big/${String(i).padStart(3, '0')}`),
      value,
      delete: false,
    }));
    await client.write({ mutations, waitForApply: true });
  });

  after(async () => {
    client.close();
    await server.stop();
    await dir.remove();
  });

  test('the node sheds beyond its reply budget, stays within its memory bound, keeps answering Gets, and gets the budget back', async () => {
    const pid = server.child.pid;
    assert.ok(pid !== undefined);
    await client.set({ key: Buffer.from('small'), value: Buffer.from('answer'), waitForApply: true });
    const baseline = await rssOf(pid);

    // Connections that grant the server no flow-control window: no reply body can leave the server.
    const sessions = Array.from({ length: 4 }, () =>
      http2.connect(`http://${server.address}`, { settings: { initialWindowSize: 0 } }),
    );
    const calls: StalledCall[] = [];
    for (const session of sessions) {
      session.on('error', () => {});
      for (let i = 0; i < 64; i++) calls.push(startCall(session, '/kvs2.Kvs2/Scan', scanPrefix(Buffer.from('big/'))));
    }
    // Every call is either held (its reply waits for window) or refused; refusals arrive as headers. The
    // server takes a connection's streams in order, so once a malformed request sent last on each
    // connection is refused, every call before it has been held or refused.
    const sentinels = sessions.map((session) => startCall(session, '/kvs2.Kvs2/Scan', Buffer.from([0x00])));
    for (const sentinel of sentinels) assert.equal((await sentinel.refused).status, 3);
    await new Promise((resolve) => setImmediate(resolve));
    const refused = calls.flatMap((call) => (call.refusal === undefined ? [] : [call.refusal]));
    const held = calls.length - refused.length;
    for (const refusal of refused) {
      assert.deepEqual(refusal, { status: 8, code: 'OVERLOADED' }, 'a shed read is RESOURCE_EXHAUSTED / OVERLOADED');
    }
    assert.ok(refused.length > 0, 'reads beyond the budget are shed');
    // A page is at most 4 MiB - 64 KiB (smaller ones when the budget runs low, one below the remainder):
    // each budget holds the full pages that fit and one more. With serving workers (--serve-workers,
    // named on the first log line) each holds its share of the budget.
    const workers = Math.max(1, Number(server.lines[0]?.serveWorkers ?? 0));
    const pageBytes = 4 * MIB - 64 * 1024;
    const mostHeld = workers * (Math.floor(Math.max(8 * MIB, Math.floor(BUDGET / workers)) / pageBytes) + 1);
    assert.ok(held <= mostHeld, `${held} pages held within a ${BUDGET}-byte budget over ${workers} thread(s)`);

    // Meanwhile a Get on another connection is answered.
    const reply = await client.get({ key: Buffer.from('small') });
    assert.equal(reply.data.toString(), 'answer');
    const grown = (await rssOf(pid)) - baseline;
    assert.ok(grown < RSS_GROWTH_BOUND, `RSS grew by ${grown} bytes; the bound is ${RSS_GROWTH_BOUND}`);

    // The clients give up: their calls end, and the budget is the node's again.
    for (const call of calls) call.stream.close(http2.constants.NGHTTP2_CANCEL);
    for (const session of sessions) session.destroy();
    let page: Awaited<ReturnType<Kvs2Client['scan']>> | undefined;
    const deadline = Date.now() + 10_000;
    while (page === undefined) {
      try {
        page = await client.scan({ prefix: Buffer.from('big/') });
      } catch (error) {
        // The server may not have seen every stream close yet.
        if (Date.now() > deadline || (error as { kvs2Code?: string }).kvs2Code !== 'OVERLOADED') throw error;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    assert.ok(page.items.length > 0);
  });
});
