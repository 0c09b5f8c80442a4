/**
 * Fuzz properties of the relay (src/relay/relay.ts and replay.ts), the other place that parses
 * bytes from outside: driven in-process with fake IIS and service sockets. For random, mutated and
 * hostile input from either side, nothing is thrown out of the relay's handlers, what it sends on
 * is FastCGI, and the service sees a request's records only after its BEGIN_REQUEST.
 */
import type net from 'node:net';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { RecordType } from '../../src/fcgi/constants.js';
import { RecordParser } from '../../src/fcgi/parser.js';
import { silentLogger } from '../../src/log/logger.js';
import { SettingsInjector } from '../../src/relay/inject.js';
import { Relay } from '../../src/relay/relay.js';
import { Replay } from '../../src/relay/replay.js';
import { chunkingArb, fcOptions, split } from '../fcgi/util.js';
import { FakeSocket, settle } from './front-harness.js';
import { hostileInputArb, requestStreamArb } from './streams.js';

interface RelayDrive {
  iis: FakeSocket;
  service: FakeSocket | null;
  thrown: unknown[];
  relay: Relay;
}

function start(withSettings: boolean): RelayDrive {
  const iis = new FakeSocket();
  const d: RelayDrive = { iis, service: null, thrown: [], relay: null as unknown as Relay };
  const link = {
    connect: async (): Promise<net.Socket> => {
      d.service = new FakeSocket();
      return d.service as unknown as net.Socket;
    },
  };
  const injector = new SettingsInjector(withSettings ? [['WSGI_APP', 'app:application'], ['CORRAL_WORKERS', '2']] : []);
  d.relay = new Relay({ iis: iis as unknown as net.Socket, link, injector, log: silentLogger(), platform: 'linux' });
  return d;
}

function emitOn(d: RelayDrive, s: FakeSocket | null, chunk: Buffer): void {
  if (!s || s.destroyed) return;
  try {
    s.emit('data', chunk);
  } catch (err) {
    d.thrown.push(err);
  }
}

/** Records in what `s` was sent, or the parse error. */
function sent(s: FakeSocket | null): { records: Array<{ type: number; requestId: number }>; error: unknown } {
  const records: Array<{ type: number; requestId: number }> = [];
  const error = s ? new RecordParser().push(Buffer.concat(s.out), (r) => records.push({ type: r.type, requestId: r.requestId })) : null;
  return { records, error };
}

describe('relay on hostile input', () => {
  test('from IIS: nothing thrown, the service gets FastCGI, and a request only after its BEGIN_REQUEST', async () => {
    await fc.assert(
      fc.asyncProperty(hostileInputArb, chunkingArb, fc.boolean(), async (input, chunking, withSettings) => {
        const d = start(withSettings);
        for (const c of split(input, chunking, 300)) {
          emitOn(d, d.iis, c);
          await settle(1);
        }
        await settle();
        expect(d.thrown).toEqual([]);
        const up = sent(d.service);
        expect(up.error).toBeNull();
        const begun = new Set<number>();
        for (const r of up.records) {
          if (r.type === RecordType.BEGIN_REQUEST) begun.add(r.requestId);
          else expect(begun.has(r.requestId)).toBe(true);
        }
        expect(sent(d.iis).error).toBeNull();
        d.relay.stop('test over');
      }),
      fcOptions(200),
    );
  });

  test('from the service: hostile answers to valid requests throw nothing, and IIS gets FastCGI', async () => {
    await fc.assert(
      fc.asyncProperty(requestStreamArb, hostileInputArb, chunkingArb, async (request, answer, chunking) => {
        const d = start(false);
        emitOn(d, d.iis, request);
        await settle();
        for (const c of split(answer, chunking, 300)) emitOn(d, d.service, c);
        await settle();
        expect(d.thrown).toEqual([]);
        expect(sent(d.iis).error).toBeNull();
        d.relay.stop('test over');
      }),
      fcOptions(200),
    );
  });
});

describe('replay on hostile frames', () => {
  test('resendable() never throws and resends only what it kept', () => {
    fc.assert(
      fc.property(fc.array(hostileInputArb, { maxLength: 5 }), (frames) => {
        const r = new Replay();
        for (const f of frames) r.keep(f);
        const again = r.resendable();
        if (again !== null) expect(Buffer.concat([...again]).equals(Buffer.concat(frames))).toBe(true);
      }),
      fcOptions(300),
    );
  });
});
